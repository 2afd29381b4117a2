"""The analysts' notebooks run top to bottom on data the project makes itself (a fresh data
directory: the scenario library simulated, its event logs and MLflow runs), in a real
kernel, as `make notebooks` runs them; and the rendered copies in the repository are the
notebooks' own code."""

from __future__ import annotations

import jupytext
import nbformat
import pytest

from tests.factories import NOTEBOOKS, notebook_module

render = notebook_module("render")


@pytest.fixture(scope="module")
def places(tmp_path_factory, library_data):
    # the library simulated once a session (tests/conftest.py), as sample_data makes it
    return library_data[0], tmp_path_factory.mktemp("nb-figures")


def outputs(nb):
    """Every text the notebook printed or showed, in order."""
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            out.append(o.get("text") or o.get("data", {}).get("text/plain", ""))
    return "\n".join(out)


def run(name, places, monkeypatch):
    data, figures = places
    monkeypatch.setenv("SELFHEAL_NOTEBOOK_DATA", str(data))
    monkeypatch.setenv("SELFHEAL_NOTEBOOK_FIGURES", str(figures))
    nb = render.execute(name)
    picture = figures / f"{name}.png"
    assert picture.stat().st_size > 10_000  # a real picture, for the README
    assert not [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    return outputs(nb)


def test_failure_analysis(places, monkeypatch):
    text = run("failure_analysis", places, monkeypatch)
    assert "failure events" in text and "recovery runs in 10 simulated runs" in text
    # the week of 14:00 deadlocks is found as a daily pattern of the database, and nothing
    # is learnt from the background errors every service has
    assert "database: ProviderError daily at 14:0" in text
    assert "daily at 00:" not in text


def test_threshold_tuning(places, monkeypatch):
    text = run("threshold_tuning", places, monkeypatch)
    assert "both targets hold" in text
    # it ends with the command that applies what it chose, or says there is none
    assert ("curl -X POST" in text and "/api/v1/thresholds/" in text) or \
        "nothing to apply" in text
    assert "threshold 4.9" not in text  # no hair trigger just above zero


def test_policy_comparison(places, monkeypatch):
    text = run("policy_comparison", places, monkeypatch)
    assert "24 runs read back from MLflow" in text
    verdicts = ("Keep the shipped policy", "Adopt the tolerant breaker", "A trade-off",
                "No clear difference")
    assert sum(v in text for v in verdicts) == 1


@pytest.mark.parametrize("name", render.NOTEBOOKS)
def test_the_rendered_notebook_is_the_text_one(name):
    """notebooks/NAME.ipynb (for reading on GitHub) holds exactly NAME.py's cells: run
    `make notebooks` after editing the .py."""
    text = jupytext.read(NOTEBOOKS / f"{name}.py")
    rendered = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    assert [(c.cell_type, c.source) for c in rendered.cells] == \
        [(c.cell_type, c.source) for c in text.cells]
    assert all(c.outputs for c in rendered.cells if c.cell_type == "code" and c.source
               and not c.source.startswith(("import", "def ")))
