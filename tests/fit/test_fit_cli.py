import numpy as np
import pyarrow.parquet as pq

from marc_ray.cli import main
from marc_ray.contracts import read_table


def test_fit_then_score_from_the_command_line(trap_table, tmp_path, capsys):
    path = tmp_path / "ann.parquet"
    pq.write_table(trap_table, path)
    assert main(["fit", str(path), "--out", str(tmp_path / "m"), "--epochs", "2",
                 "--n-pairs", "500", "--hidden-sizes", "16,8"]) == 0
    assert "marc: gamma=" in capsys.readouterr().out
    assert main(["score", str(path), "--model", str(tmp_path / "m"),
                 "--out", str(tmp_path / "s.parquet")]) == 0
    assert np.isfinite(np.asarray(read_table(tmp_path / "s.parquet").column("conf_marc"))).all()


def test_bad_values_exit_with_status_2(trap_table, tmp_path, capsys):
    path = tmp_path / "ann.parquet"
    pq.write_table(trap_table, path)
    assert main(["fit", str(path), "--out", str(tmp_path / "m"), "--variant", "x"]) == 2
    assert "variant must be one of ['marc', 'vanilla'], got 'x'" in capsys.readouterr().err
    assert main(["score", str(path), "--model", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "s.parquet")]) == 2
    assert "config.json: no such file" in capsys.readouterr().err
