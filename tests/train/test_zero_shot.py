"""The end-of-run zero-shot check (``metrics.json``'s ``zero_shot_check`` and the warning):
every head, the validation and test splits, explicit units (issue 21, items 2 and 8)."""

from __future__ import annotations

from sparseft.zero_shot import regression_warning, zero_shot_check

BASE = {"energy_per_atom_mae": 0.012, "forces_mae": 0.060, "lj.energy_per_atom_mae": 0.010, "lj.forces_mae": 0.05}


def _metrics(valid: dict, test: dict) -> dict:
    return {
        "splits": {"valid": {**BASE, **valid}, "test": {**BASE, **test}},
        "base_zero_shot": {"valid": dict(BASE), "test": dict(BASE), "xtb_test": dict(BASE)},
    }


def test_a_head_five_times_worse_on_test_is_reported():
    metrics = _metrics({"lj.energy_per_atom_mae": 0.009}, {"lj.energy_per_atom_mae": 0.050})
    check = zero_shot_check(metrics, [])
    assert [(w["split"], w["metric"]) for w in check["worse_than_zero_shot"]] == [("test", "lj.energy_per_atom_mae")]
    text = regression_warning(check)
    assert "test: [lj] energy MAE 50.00 meV/atom vs 10.00 meV/atom" in text, text


def test_the_warning_names_its_units():
    metrics = _metrics({"forces_mae": 0.070, "energy_per_atom_mae": 0.02, "stress_mae": 0.002}, {})
    metrics["base_zero_shot"]["valid"]["stress_mae"] = 0.001
    metrics["splits"]["valid"]["spin.magmoms_mae"] = 0.3
    metrics["base_zero_shot"]["valid"]["spin.magmoms_mae"] = 0.2
    text = regression_warning(zero_shot_check(metrics, []))
    assert "x1000" not in text
    assert "energy MAE 20.00 meV/atom vs 12.00 meV/atom" in text
    assert "force MAE 70.0 meV/Å vs 60.0 meV/Å" in text
    assert "stress MAE 2.00 meV/Å³ vs 1.00 meV/Å³" in text
    assert "[spin] magnetic-moment MAE 0.3000 μB vs 0.2000 μB" in text


def test_no_regression_no_warning():
    check = zero_shot_check(_metrics({"lj.forces_mae": 0.01}, {"lj.forces_mae": 0.01}), [])
    assert check["worse_than_zero_shot"] == []


def test_the_config_type_table_names_its_units():
    from sparseft.evaluation import config_type_table

    header = config_type_table({"test": {"Default": {"energy_per_atom_mae": 0.001}}}).splitlines()[1]
    assert header.split() == ["meV/atom", "meV/atom", "meV/Å", "meV/Å", "%"]
