"""`dartsfast bench ops`: exact op counts of a search step, for any configuration, and the
budget check CI can run."""
import json

import pytest

from dartsfast.cli import EXIT_USAGE, main


def test_counts_any_configuration_and_writes_json(tmp_path, capsys):
    out = tmp_path / "ops.json"
    code = main(["bench", "ops", "--config", "tiny", "--orders", "1", "--ops", "dsconv_3x3,mbconv_3x3,none",
                 "--json", str(out)])
    assert code == 0
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 1 and rows[0]["order"] == 1 and rows[0]["host_syncs"] == 0
    assert rows[0]["aten_ops"] > 0 and len(rows[0]["per_cell_forward"]) == 3
    assert rows[0]["kernel_launches"] is None  # CPU: no launches to count
    assert "tiny order 1:" in capsys.readouterr().out
    # the per-edge layout of the same network dispatches more
    assert main(["bench", "ops", "--config", "tiny", "--orders", "1", "--ops", "dsconv_3x3,mbconv_3x3,none",
                 "--no-edge-batching", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["rows"][0]["aten_ops"] > rows[0]["aten_ops"]


def test_check_fails_when_a_count_is_above_its_budget(tmp_path, capsys):
    budgets = tmp_path / "budgets.json"
    budgets.write_text(json.dumps({"search_step": {"seed/order1": {"aten_ops": 100, "host_syncs": 0}}}))
    assert main(["bench", "ops", "--orders", "1", "--check", str(budgets)]) == 1
    assert "OVER BUDGET order 1: aten_ops" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--config", "tiny", "--check"], "--check holds the seed configuration"),
    (["--orders", "3"], "--orders"),
    (["--check", "/nonexistent/budgets.json"], "not a budgets file"),
])
def test_bad_requests_exit_2(args, message, capsys):
    assert main(["bench", "ops", *args]) == EXIT_USAGE
    assert message in capsys.readouterr().err
