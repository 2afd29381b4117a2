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
# # Policy comparison
#
# Would a more tolerant circuit breaker serve patients better? It opens only when 80 % of
# calls fail (not 50 %) and, once open, waits two minutes before trying the provider again
# (not 30 s): fewer flaps on a provider that fails on and off, at the price of staying on the
# fallback longer. Both policies replay the same outages on the same seeds, every run is
# logged to MLflow, and the comparison below reads them back from MLflow, as it would read
# any two policies (or two catalogues an operator is choosing between).

# %%
import shutil

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import sample_data
import yaml

from actors.frames import open_frames
from healing.catalogue import SHIPPED, load_catalogue
from simulation.runner import simulate
from simulation.scenario import SCENARIOS, load_scenario

data = sample_data.ensure()
mlflow_uri = f"sqlite:///{data / 'mlflow.db'}"

# policy B: the shipped catalogue with a more tolerant breaker
tolerant = data / "policies" / "tolerant_breaker"
shutil.rmtree(tolerant, ignore_errors=True)
shutil.copytree(SHIPPED, tolerant)
policy = yaml.safe_load((tolerant / "policy.yaml").read_text())
policy["breaker"].update(failure_rate_threshold=0.8, wait_in_open="120s")
(tolerant / "policy.yaml").write_text(yaml.safe_dump(policy))
catalogues = {"shipped": None, "tolerant breaker": load_catalogue(tolerant)}

# %% [markdown]
# ## The replays
#
# Three outages where the breaker matters (a provider that fails and comes back, one that
# flaps, one that degrades slowly), four seeds each, under both policies: 24 runs, logged to
# the `selfheal-simulation` experiment with the catalogue each ran under.

# %%
scenarios = [load_scenario(SCENARIOS / f"{n}.yaml") for n in (
    "drug_interaction_outage", "flapping_provider", "slow_degradation")]
started = pd.Timestamp.now(tz="UTC")
for catalogue in catalogues.values():
    simulate(scenarios, runs=4, mlflow_uri=mlflow_uri, catalogue=catalogue)

runs = open_frames(data).mlflow_runs(start=started)
runs["policy"] = np.where(runs["params.catalogue"] == "shipped", "shipped",
                          "tolerant breaker")
runs["scenario"] = runs["params.scenario"]
runs["seed"] = runs["params.seed"].astype(int)
print(f"{len(runs)} runs read back from MLflow")

# %% [markdown]
# ## Outcomes, with their spread across seeds
#
# Availability (requests answered through any allowed tier), mean time to detect and to
# recover, and whether recovery succeeded, per scenario: mean and standard deviation over
# the seeds.

# %%
METRICS = {"metrics.availability": ("availability", +1),
           "metrics.mttd_s": ("MTTD s", -1),
           "metrics.mttr_s": ("MTTR s", -1),
           "metrics.recovery_success_rate": ("recovery success", +1)}
present = [m for m in METRICS if m in runs]
table = runs.groupby(["scenario", "policy"])[present].agg(["mean", "std"])
table.columns = [f"{METRICS[m][0]} {stat}" for m, stat in table.columns]
table.round(4)

# %% [markdown]
# ## Paired differences
#
# Each seed of each scenario ran under both policies, so the runs pair up: the difference
# (tolerant breaker minus shipped) per pair, with a 95 % bootstrap interval of its mean.
# A metric moves for the better or the worse only when the interval excludes zero.

# %%
rng = np.random.default_rng(0)
wide = runs.pivot_table(index=["scenario", "seed"], columns="policy", values=present)
rows = []
for m in present:
    name, sign = METRICS[m]
    d = (wide[(m, "tolerant breaker")] - wide[(m, "shipped")]).dropna().to_numpy()
    if len(d) == 0:
        continue
    boots = rng.choice(d, size=(5000, len(d))).mean(axis=1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    if lo * sign > 0:
        verdict = "better"
    elif hi * sign < 0:
        verdict = "worse"
    else:
        verdict = "no clear difference"
    rows.append({"metric": name, "pairs": len(d), "mean difference": d.mean(),
                 "95 % interval": f"[{lo:.4g}, {hi:.4g}]", "tolerant breaker is": verdict})
paired = pd.DataFrame(rows).set_index("metric")
paired

# %% [markdown]
# ## Verdict

# %%
def listed(names):
    return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


better = paired.index[paired["tolerant breaker is"] == "better"].tolist()
worse = paired.index[paired["tolerant breaker is"] == "worse"].tolist()
if worse and not better:
    verdict = (f"Keep the shipped policy: the tolerant breaker is worse on {listed(worse)}, "
               f"and better on nothing.")
elif better and not worse:
    verdict = (f"Adopt the tolerant breaker: it is better on {listed(better)}, and worse on "
               f"nothing.")
elif better and worse:
    verdict = (f"A trade-off, not a win: the tolerant breaker is better on {listed(better)} "
               f"and worse on {listed(worse)}; decide which matters.")
else:
    verdict = "No clear difference on these outages: keep the shipped policy."
print(verdict)

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4), constrained_layout=True)
for ax, m in zip(axes, ["metrics.availability", "metrics.mttr_s"], strict=True):
    for k, (name, group) in enumerate(runs.groupby("policy")):
        xs = [scenarios.index(next(s for s in scenarios if s.name == sc)) + (k - 0.5) * 0.25
              for sc in group["scenario"]]
        ax.plot(xs, group[m], "o", alpha=0.7, label=name)
    ax.set_xticks(range(len(scenarios)), [s.name for s in scenarios], fontsize=8)
    ax.set(title=METRICS[m][0] + " per run (each dot a seed)")
axes[0].legend()
fig.suptitle(verdict, fontsize=9)
fig.savefig(sample_data.figures_dir() / "policy_comparison.png", dpi=90)
