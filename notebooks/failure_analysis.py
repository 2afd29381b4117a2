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
# # Failure analysis
#
# What failed, when and why; who answered the patients while it did; how long recovery
# took; and which failures come back. Everything here is read through `actors.frames`, the
# same frames whether they come from simulation event logs (as here: the scenario library,
# simulated once by `sample_data.ensure()`), from a running service, or from the data
# directory a stopped one left. Identifiers appear only as the pseudonyms the audit trail
# keeps.

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import sample_data

from actors.frames import open_frames

pd.set_option("display.width", 120)
data = sample_data.ensure()
frames = open_frames(data)  # the event logs in data/events, MLflow in data/mlflow.db
# frames = open_frames()                       # or the running service of selfheal.toml
# frames = open_frames("/var/lib/selfheal")   # or what a stopped service left

failures = frames.failures()
outcomes = frames.outcomes()
runs = frames.workflow_runs()
print(f"{len(failures):,} failure events, {outcomes['weight'].sum():,.0f} requests and "
      f"{len(runs)} recovery runs in {outcomes['run'].nunique()} simulated runs")

# %% [markdown]
# ## When and where it fails
#
# Failures by hour of the day (UTC) and service. Most scenarios start at midnight (the AI
# provider outage at 08:00), so the early hours hold most outages; the 14:00 column is a
# deadlock that recurs every day for a week.

# %%
by_hour = failures.assign(hour=failures["time"].dt.hour).pivot_table(
    index="hour", columns="service", values="record_id", aggfunc="count", fill_value=0)
by_hour

# %% [markdown]
# By service and cause (the primary's error), and which tier then served the request
# ("nobody" is an explicit failure with guidance: life-critical requests get no substitute,
# prescriptive ones no cached data).

# %%
pd.crosstab(failures["service"], failures["error_kind"], margins=True)

# %%
served = failures["served_by"].fillna("nobody: failed explicitly")
pd.crosstab(failures["service"], served)

# %% [markdown]
# ## Patient impact
#
# Who answered each service's requests: the primary, a fallback tier, or nobody. Successes
# are a 10 % sample in the streams; `weight` re-weights them, so the shares are of all
# requests. Then the impact the audit trail records for each failure.

# %%
answered_by = np.where(~outcomes["answered"], "failed explicitly",
                       np.where(outcomes["tier"] == "primary", "primary",
                                "fallback: " + outcomes["tier"].astype(str)))
impact = (outcomes.assign(answered_by=answered_by)
          .pivot_table(index="service", columns="answered_by", values="weight",
                       aggfunc="sum", fill_value=0))
share = impact.div(impact.sum(axis=1), axis=0)
(100 * share).round(3)

# %%
pd.crosstab(failures["service"], failures["patient_impact"])

# %% [markdown]
# ## Recovery
#
# Every workflow run: how long it took and how it ended. A run that rolled back put things
# as they were; one that was refused never started.

# %%
durations = runs.groupby("workflow")["duration_s"].describe()[["count", "mean", "50%", "max"]]
durations.join(runs.groupby("workflow")["succeeded"].mean().rename("success rate"))

# %%
pd.crosstab(runs["workflow"], runs["ended"])

# %% [markdown]
# ## The worst incident, minute by minute
#
# The run and service with the most failures: its primary's error rate per minute, with the
# time it was really in trouble (the simulator's ground truth) shaded, and the detections
# that started its recovery.

# %%
worst_run, worst_service = failures.groupby(["run", "service"]).size().idxmax()
metrics = frames.metrics(services=worst_service)
metrics = metrics[metrics["run"] == worst_run]
trouble = frames.trouble(services=worst_service)
trouble = trouble[trouble["run"] == worst_run]
detections = frames.detections(services=worst_service)
detections = detections[detections["run"] == worst_run]
print(f"{worst_service} in {worst_run}: {len(detections)} detections, "
      f"{len(trouble)} troubled stretch(es)")

# %% [markdown]
# ## Recurring failures
#
# Patterns by time of day or week, learnt from the failures exactly as the control API and
# the scheduled training learn them, with what to do before the next one.

# %%
patterns = frames.patterns()
patterns[["service", "frequency", "description", "typical_cause", "occurrences",
          "recommended_action", "priority", "estimated_impact"]]

# %% [markdown]
# ## One picture

# %%
fig, axes = plt.subplots(2, 2, figsize=(13, 8), constrained_layout=True)
ax = axes[0, 0]
by_hour.plot.bar(stacked=True, ax=ax, width=0.9, legend=False)
ax.set(title="Failures by hour of day (UTC)", xlabel="hour", ylabel="failure events")
ax.legend(fontsize=7, ncol=2)
ax = axes[0, 1]
(100 * share.drop(columns="primary")).plot.barh(stacked=True, ax=ax, width=0.7)
ax.set(title="Requests the primary did not answer: who did", xlabel="% of requests",
       ylabel="")
ax.legend(fontsize=7, loc="lower right")
ax = axes[1, 0]
order = runs.groupby("workflow")["duration_s"].median().sort_values().index
ax.boxplot([runs.loc[runs["workflow"] == w, "duration_s"].dropna() for w in order],
           orientation="horizontal")
ax.set_yticks(range(1, len(order) + 1), order, fontsize=8)
ax.set(title="Recovery run durations", xlabel="seconds")
ax = axes[1, 1]
ax.plot(metrics["time"], 100 * metrics["error_rate"], lw=1, label="primary error rate")
for row in trouble.itertuples():
    ax.axvspan(row.start, row.end, color="tab:red", alpha=0.15, label="in trouble (truth)")
ax.plot(detections["time"], [104] * len(detections), "v", color="tab:green", ms=4,
        label="detections")
ax.set(title=f"{worst_service}, per minute", ylabel="%", ylim=(-2, 110))
ax.legend(fontsize=8, loc="center right")
ax.tick_params(axis="x", labelrotation=30, labelsize=7)
fig.savefig(sample_data.figures_dir() / "failure_analysis.png", dpi=90)
