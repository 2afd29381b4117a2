# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Threshold tuning
#
# Two thresholds decide when selfheal acts on a service:
#
# * the **predictive monitor**'s evidence level `h`: how much evidence of a rising error
#   rate it needs before it raises an `anomaly` (lower: earlier, and more false alarms);
# * the **error threshold**: the error rate over which the orchestrator starts the
#   service's recovery (an `error_threshold` trigger).
#
# Here both are replayed on labelled history (each 10 s bucket marked by whether the
# service was really in trouble) and set against the targets: false positives under 5 %,
# false negatives under 1 %. The history is the scenario library's event logs; the same
# frames come from a running service (`open_frames()`), where "in trouble" means a circuit
# of the service stood open.

# %%
import matplotlib.pyplot as plt
import pandas as pd
import sample_data

from actors.frames import open_frames, to_segments
from healing.catalogue import load_catalogue
from learning.policy import policy_from
from learning.thresholds import AdaptiveThresholdManager
from learning.training import GRID, train_service

MAX_FPR, MAX_FNR = 0.05, 0.01  # the targets
frames = open_frames(sample_data.ensure())
history = frames.history(bucket_s=10)
segments = to_segments(history)  # per service, one stretch of buckets per run
summary = history.groupby("service").agg(buckets=("start", "size"),
                                         troubled=("troubled", "sum"),
                                         calls=("calls", "sum"), errors=("errors", "sum"))
summary

# %% [markdown]
# ## The predictive monitor: ROC and precision-recall per service
#
# Each evidence level of the grid the training chooses from is replayed on every stretch of
# history (a fresh monitor for each). A false positive is an alarm in a healthy bucket
# (the rate is per healthy bucket); a false negative is a troubled episode never alarmed.
# The training picks the earliest detection among the levels that keep false alarms under
# 0.1 % of buckets and miss under 1 % of episodes: a monitor that cries wolf every few
# minutes is one nobody reads.

# %%
tables, chosen = {}, {}
for service, segs in sorted(segments.items()):
    if not any(b.troubled for seg in segs for b in seg):
        continue  # nothing to detect: no ROC
    policy, best, table = train_service(service, segs, grid=GRID)
    tables[service] = pd.DataFrame(table).set_index("h")
    chosen[service] = {"h": policy.h, **best}
choice = pd.DataFrame(chosen).T
choice["meets 5 % / 1 %"] = (choice["false_positive_rate"] <= MAX_FPR) & (
    choice["false_negative_rate"] <= MAX_FNR)
choice[["h", "false_positive_rate", "false_negative_rate", "precision", "recall",
        "detection_delay_s", "episodes", "meets 5 % / 1 %"]].round(4)

# %%
fig, (roc, pr) = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
for service, t in tables.items():
    line, = roc.plot(100 * t["false_positive_rate"], 100 * t["recall"], "o-", ms=3,
                     label=service)
    pr.plot(100 * t["recall"], 100 * t["precision"], "o-", ms=3, color=line.get_color())
    h = chosen[service]
    roc.plot(100 * h["false_positive_rate"], 100 * h["recall"], "*", ms=14,
             color=line.get_color())
    pr.plot(100 * h["recall"], 100 * h["precision"], "*", ms=14, color=line.get_color())
roc.axvline(100 * MAX_FPR, ls="--", color="grey")
roc.axhline(100 * (1 - MAX_FNR), ls="--", color="grey")
roc.set_xscale("symlog", linthresh=0.01)  # linear up to 0.01 %, then logarithmic
roc.set(title="ROC of the predictive monitor (* chosen h; dashed: the targets)",
        xlabel="false positives, % of healthy buckets", ylabel="episodes detected, %",
        xlim=(-0.002, 10), ylim=(-5, 105))
pr.set(title="Precision-recall", xlabel="recall, % of episodes",
       ylabel="precision, % of alarms", ylim=(-5, 105))
roc.legend(fontsize=8)
fig.savefig(sample_data.figures_dir() / "threshold_tuning.png", dpi=90)

# %% [markdown]
# ## The error threshold, and what the adaptive threshold manager would change
#
# The manager takes each healthy bucket's error rate and each troubled episode's peak, and
# chooses the lowest threshold that keeps false positives under 5 %; it says so when
# misses then stay over 1 %, and what holding the misses would cost. It changes a threshold
# in force only when the new one moves by more than 20 %.

# %%
in_force = policy_from(load_catalogue()).error_thresholds  # the shipped catalogue's
manager = AdaptiveThresholdManager(max_fpr=MAX_FPR, max_fnr=MAX_FNR,
                                   current={s: t for s, t in in_force.items()
                                            if s in segments})
rows, changes = [], []
for service, segs in sorted(segments.items()):
    found = manager.choose_on_history(service, segs)
    if found is None:
        continue
    change = manager.apply(found)
    if change is not None:
        changes.append(change)
    rows.append({"service": service, "in force": in_force.get(service),
                 "chosen": found.threshold, "false positives": found.false_positive_rate,
                 "false negatives": found.false_negative_rate,
                 "both targets": found.meets_targets,
                 "change": change.reason if change else "none (within 20 %)"})
pd.DataFrame(rows).set_index("service").round(4)

# %% [markdown]
# Each choice in words, with the trade-off where both targets cannot hold:

# %%
for service, segs in sorted(segments.items()):
    found = AdaptiveThresholdManager(MAX_FPR, MAX_FNR).choose_on_history(service, segs)
    if found is not None:
        print(found.describe())

# %% [markdown]
# ## Applying it
#
# A threshold goes into force through the control API of the running service (an operator
# token; audited with who and why; `POST /api/v1/thresholds/{service}/revert` undoes it).
# The rule it feeds needs the error rate's lower confidence bound over the window to pass
# the threshold, so a threshold chosen on 10 s buckets errs on the side of fewer alarms.
# The scheduled training (`selfheal up`, daily) applies the same choices by itself.

# %%
window_s = policy_from(load_catalogue()).error_window_s
for change in changes:
    reason = change.reason.replace('"', "'")
    print(f"curl -X POST -H \"Authorization: Bearer $SELFHEAL_TOKEN\" "
          f"-H 'Content-Type: application/json' "
          f"http://127.0.0.1:8000/api/v1/thresholds/{change.service} "
          f"-d '{{\"threshold\": {change.new:.4f}, \"window_s\": {window_s:g}, "
          f"\"reason\": \"threshold tuning: {reason}\"}}'")
if not changes:
    print("nothing to apply: every threshold in force is within 20 % of its tuned value")
