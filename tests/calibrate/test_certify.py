"""The one certify path (``calibrate.certify``): every way to a certificate is bound and
provenance-checked, and no certificate's calibration rows meet the rows that shaped what it
relies on (issue 20, "One certify path" and "Provenance by construction")."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from marc_ray import cli
from marc_ray.calibrate import SelectiveCalibrator
from marc_ray.calibrate.cascade import CascadeCalibrator
from marc_ray.calibrate.certify import Stage, certify
from marc_ray.calibrate.config import CalibrateConfig
from marc_ray.calibrate.groups import GroupedCalibrator
from marc_ray.calibrate.routing import Routing
from marc_ray.calibrate.stage import calibrate_stage
from marc_ray.cli import main
from marc_ray.contracts import JUDGE_METADATA_KEY, Certificate, ContractError
from marc_ray.contracts.provenance import (id_hashes, provenance_metadata, provenance_record,
                                           seen_rows)

CONF = "conf_simulated"


@pytest.fixture(autouse=True)
def only_calibration_commands(monkeypatch):
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("marc_ray.calibrate.cli", "marc_ray.pipeline_cli"))


def _scored(path, judge, seed, n=900, seen=(), model="m1"):
    """A scored file of one judge: items item-0..n-1, a third train, the rest calibration;
    ``seen`` ids recorded in its provenance as training rows of its confidence column."""
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0.5, 1.0, n)
    human = np.random.default_rng(99).choice(["a", "b", "tie"], n, p=[0.47, 0.47, 0.06])
    # every judge labels the same items; its verdict agrees more often when it is confident
    agree = rng.random(n) < 0.3 + 0.7 * confidence
    pred = np.where(agree, np.where(human == "tie", "a", human), np.where(human == "a", "b", "a"))
    ids = [f"item-{i}" for i in range(n)]
    table = pa.table({"id": ids, "judge": [judge] * n, "pred": pred.tolist(), CONF: confidence,
                      "human_label": human.tolist(),
                      "split": ["train" if i % 3 == 0 else "calibration" for i in range(n)],
                      "group": [f"g{i % 3 + i % 2}" for i in range(n)]})
    metadata = {JUDGE_METADATA_KEY: json.dumps({"name": judge, "model": {"model": model}}).encode()}
    if seen:
        metadata.update(provenance_metadata({CONF: {f"{CONF}: trained": provenance_record(seen)}}))
    pq.write_table(table.replace_schema_metadata(metadata), path)
    return path


def _assert_bound_and_recorded(certificate: Certificate, n_stages: int):
    assert len(certificate.stages) == n_stages
    for stage in certificate.stages:
        assert isinstance(stage.get("binding"), dict), stage
        assert stage["binding"]["judge"] and stage["binding"]["confidence"] == CONF
    assert certificate.provenance and len(certificate.provenance["digest"]) == 64
    # the digest covers the binding and provenance: written and read back, it verifies
    Certificate.from_dict(certificate.to_dict())


# ---- every path to a certificate -------------------------------------------------------------

def _cli(args, out):
    code = main(["calibrate", *args, "--confidence-column", CONF, "--out", str(out)])
    return code, (Certificate.read(out / "certificate.json") if code == 0 else None)


def _stage(settings, paths, out):
    calibrate_stage(settings, [p.stem for p in paths], [str(p) for p in paths], str(out),
                    model_folders=[None] * len(paths))
    return Certificate.read(out)


def _api(paths, **options):
    tables = [pq.read_table(p) for p in paths]
    calibration = [t.filter(pa.compute.equal(t.column("split"), "calibration")) for t in tables]
    from marc_ray.calibrate.cli import scores_provenance

    stages = [Stage(p.stem, CONF, t.column(CONF).to_numpy(), np.asarray(t.column("pred").to_pylist(), object),
                    provenance=scores_provenance(str(p), CONF))
              for p, t in zip(paths, calibration)]
    first = calibration[0]
    groups = np.asarray(first.column("group").to_pylist(), object) if options.pop("by", False) else None
    certified = certify(stages, first.column("human_label").to_pylist(), first.column("id").to_pylist(),
                        groups=groups, by="group" if groups is not None else None, **options)
    return certified


PATHS = {  # name -> (n_files, how it certifies: a function of (paths, out))
    "cli single": (1, lambda paths, out: _cli([str(paths[0])], out)[1]),
    "cli grouped": (1, lambda paths, out: _cli([str(paths[0]), "--by", "group"], out)[1]),
    "cli cascade": (2, lambda paths, out: _cli([str(p) for p in paths] + ["--cascade"], out)[1]),
    "stage single": (1, lambda paths, out: _stage(CalibrateConfig(confidence=CONF), paths, out)),
    "stage cascade": (2, lambda paths, out: _stage(CalibrateConfig(confidence=CONF), paths, out)),
    "stage grouped": (1, lambda paths, out: _stage(CalibrateConfig(confidence=CONF, by="group"),
                                                   paths, out)),
    "api single": (1, lambda paths, out: _api(paths).certificates[0.1]),
    "api cascade": (2, lambda paths, out: _api(paths).certificates[0.1]),
    "api grouped": (1, lambda paths, out: _api(paths, by=True).certificates[0.1]),
    "stage designed single": (1, lambda paths, out: _stage(
        CalibrateConfig(confidence=CONF, design=True), paths, out)),
    "stage designed cascade": (2, lambda paths, out: _stage(
        CalibrateConfig(confidence=CONF, design=True, costs=[1, 10]), paths, out)),
}


@pytest.mark.parametrize("path", sorted(PATHS))
def test_every_path_to_a_certificate_is_bound_and_provenance_checked(path, tmp_path):
    n_files, run = PATHS[path]
    clean = [_scored(tmp_path / f"judge{l}.parquet", f"judge{l}", seed=l) for l in range(n_files)]
    certificate = run(clean, tmp_path / "out.json" if path.startswith("stage") else tmp_path / "out")
    _assert_bound_and_recorded(certificate, n_files)

    # the same path with one calibration row among the confidence model's training rows: refused
    dirty_dir = tmp_path / "dirty"
    dirty_dir.mkdir()
    seen = ["item-1", "item-2", "item-3"]  # item-3 is a train row, items 1 and 2 calibration
    dirty = [_scored(dirty_dir / f"judge{l}.parquet", f"judge{l}", seed=l, seen=seen)
             for l in range(n_files)]
    out = dirty_dir / ("out.json" if path.startswith("stage") else "out")
    if path.startswith("cli"):
        code, _ = _cli_exit(run, dirty, out)
        assert code == 2 and not out.exists()
    else:
        with pytest.raises(ContractError, match=r"2 of \d+ calibration rows .*first id 'item-1'"):
            run(dirty, out)
        assert not out.exists()


def _cli_exit(run, paths, out):
    try:
        return 2 if run(paths, out) is None else 0, None
    except SystemExit as exit_:
        return exit_.code, None


def test_cli_refusal_is_one_line_with_count_first_id_and_way_out(tmp_path, capsys):
    path = _scored(tmp_path / "s.parquet", "judge0", 0, seen=["item-4", "item-5"])
    assert main(["calibrate", str(path), "--confidence-column", CONF, "--out", str(tmp_path / "o")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "2 of 600 calibration rows" in error and "first id 'item-4'" in error
    assert "--exclude-seen-rows" in error
    # the explicit flag leaves them out and says how many
    assert main(["calibrate", str(path), "--confidence-column", CONF, "--exclude-seen-rows",
                 "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "left out 2 calibration rows" in out
    certificate = Certificate.read(tmp_path / "o" / "certificate.json")
    assert certificate.n_calibration == 598 and certificate.provenance["n_excluded"] == 2
    assert certificate.provenance["roles"][f"judge0: {CONF}: trained"]["count"] == 2


def test_stage_excludes_seen_rows_only_when_configured(tmp_path):
    path = _scored(tmp_path / "s.parquet", "judge0", 0, seen=["item-4"])
    with pytest.raises(ContractError, match="calibrate.exclude_seen: true"):
        _stage(CalibrateConfig(confidence=CONF), [path], tmp_path / "a.json")
    certificate = _stage(CalibrateConfig(confidence=CONF, exclude_seen=True), [path], tmp_path / "b.json")
    assert certificate.n_calibration == 599 and certificate.provenance["n_excluded"] == 1
    # the drift reference holds the rows calibrated on, not the one left out
    assert len(certificate.extra["calibration_confidence"]["s"]) == 599


def test_a_quantile_grid_from_calibration_items_is_refused_on_the_grouped_path(tmp_path):
    """Defect 4: GroupedCalibrator took no ids, so it could not refuse such a grid."""
    from marc_ray.calibrate.grid import quantile_grid

    rng = np.random.default_rng(0)
    ids = np.array([f"i{k}" for k in range(600)], dtype=object)
    confidence = rng.uniform(0.5, 1, 600)
    pred = np.full(600, "a", dtype=object)
    human = np.where(rng.random(600) < confidence, "a", "b").astype(object)
    groups = np.array(["x", "y"] * 300, dtype=object)
    grid = quantile_grid(confidence[:100], 20, ids=ids[:100])
    with pytest.raises(ValueError, match="quantile grid was built from"):
        GroupedCalibrator(grid=grid).calibrate(confidence, pred, human, groups=groups, ids=ids)
    # through certify the grid's rows are provenance: refused as such, or left out on request
    with pytest.raises(ContractError, match="quantile grid"):
        certify([Stage("j", CONF, confidence, pred)], human, ids, grid=grid, groups=groups)
    certified = certify([Stage("j", CONF, confidence, pred)], human, ids, grid=grid, groups=groups,
                        exclude_seen=True)
    assert certified.n_excluded == 100 and not certified.kept[:100].any()


# ---- defect 4: grouped certificates are bound; apply refuses other scores ---------------------

def test_grouped_stage_certificate_refuses_another_judges_scores(tmp_path, capsys):
    """The pipeline's calibrate.by certificate carried no binding, so apply accepted scores of
    another judge or model (issue 20, defect 4). It is bound now, and apply refuses them."""
    ours = _scored(tmp_path / "judge0.parquet", "judge0", 0)  # the pipeline names it by its judge
    certificate_path = tmp_path / "certificate.json"
    _stage(CalibrateConfig(confidence=CONF, by="group"), [ours], certificate_path)
    assert main(["apply", str(certificate_path), str(ours), "--out", str(tmp_path / "ok")]) == 0
    capsys.readouterr()
    other_model = _scored(tmp_path / "other_model.parquet", "judge0", 0, model="m2")
    assert main(["apply", str(certificate_path), str(other_model), "--out", str(tmp_path / "no")]) == 2
    assert "model: certified" in capsys.readouterr().err
    other_judge = _scored(tmp_path / "other_judge.parquet", "judge9", 0)
    assert main(["apply", str(certificate_path), str(other_judge), "--out", str(tmp_path / "no2")]) == 2


# ---- the property: no certificate's calibration ids meet its provenance ids --------------------

def test_no_certificate_calibrates_on_its_provenance_rows_over_random_splits():
    """Over random splits and provenance sets, every certify path (single, cascade, grouped, a
    cascade designed on training rows; refusing or excluding) gives a certificate whose calibration rows are disjoint from every
    provenance row, or refuses."""
    rng = np.random.default_rng(20)
    certified_by_mode = dict.fromkeys(("single", "cascade", "grouped", "designed"), 0)
    for repetition in range(80):
        n = int(rng.integers(80, 400))
        ids = np.array([f"r{repetition}-{k}" for k in range(n)], dtype=object)
        is_calibration = rng.random(n) < rng.uniform(0.2, 0.9)
        # provenance: training rows, plus (sometimes) calibration rows leaking in
        leak = is_calibration & (rng.random(n) < rng.choice([0.0, 0.05, 0.5]))
        seen_ids = ids[(~is_calibration & (rng.random(n) < 0.8)) | leak]
        provenance = {"model: trained": provenance_record(seen_ids)} if seen_ids.size else {}
        cal = np.flatnonzero(is_calibration)
        confidence = rng.uniform(0.5, 1, n)
        pred = rng.choice(["a", "b"], n).astype(object)
        human = np.where(rng.random(n) < confidence, pred, np.where(pred == "a", "b", "a")).astype(object)
        groups = rng.choice(["u", "v"], n).astype(object)
        mode = ("single", "cascade", "grouped", "designed")[repetition % 4]
        second = rng.uniform(0.5, 1, n)
        stages = [Stage("j1", CONF, confidence[cal], pred[cal])]
        if mode in ("cascade", "designed"):
            stages.append(Stage("j2", CONF, second[cal], pred[cal]))
        design = None
        if mode == "designed":  # a design read on training rows, and sometimes calibration rows
            read = np.flatnonzero(~is_calibration | leak)
            design = {"train": {"confidence": np.stack([confidence, second], axis=1)[read],
                                "pred": np.stack([pred, pred], axis=1)[read],
                                "human_label": human[read], "ids": ids[read]}, "drop": False}
            seen_ids = np.union1d(seen_ids, ids[read])
        exclude = bool(repetition % 2)
        try:
            certified = certify(stages, human[cal], ids[cal], provenance=provenance,
                                groups=groups[cal] if mode == "grouped" else None,
                                exclude_seen=exclude, design=design)
        except ContractError:
            assert leak.any() and (not exclude or np.isin(ids[cal], seen_ids).all())
            continue
        used = ids[cal][certified.kept]
        assert not np.isin(used, seen_ids).any()
        assert certified.n_excluded == int(np.isin(ids[cal], seen_ids).sum())
        certificate = certified.certificates[0.1]
        assert certificate.n_calibration == used.size
        assert certificate.provenance["n_excluded"] == certified.n_excluded
        certified_by_mode[mode] += 1
    assert min(certified_by_mode.values()) >= 3, certified_by_mode  # every path, not only refusals


# ---- one interface: calibrate, route and certificate, the same on all three -------------------

def test_the_three_calibrators_share_calibrate_route_and_certificate():
    import inspect

    rng = np.random.default_rng(1)
    confidence = rng.uniform(0.5, 1, 800)
    pred = rng.choice(["a", "b"], 800).astype(object)
    human = np.where(rng.random(800) < confidence, pred, "tie").astype(object)
    groups = np.array(["x", "y"] * 400, dtype=object)
    ids = np.array([f"i{k}" for k in range(800)], dtype=object)
    kinds = (SelectiveCalibrator, CascadeCalibrator, GroupedCalibrator)
    # one signature: the same names everywhere; GroupedCalibrator adds groups (as in route)
    for method in ("calibrate", "route", "certificate"):
        signatures = [{name: (p.kind, p.default) for name, p in
                       inspect.signature(getattr(kind, method)).parameters.items() if name != "groups"}
                      for kind in kinds]
        assert signatures[0] == signatures[1] == signatures[2], method
    common = dict(ids=ids, names=["j"])
    single = SelectiveCalibrator().calibrate(confidence, pred, human, **common)
    cascade = CascadeCalibrator().calibrate(confidence, pred, human, **common)
    grouped = GroupedCalibrator().calibrate(confidence, pred, human, groups=groups, **common)
    routes = [single.route(confidence, pred), cascade.route(confidence, pred),
              grouped.route(confidence, pred, groups=groups)]
    assert all(type(r) is Routing for r in routes)
    assert np.array_equal(routes[0].stage, routes[1].stage)
    assert not any(r.unseen.any() for r in routes)
    assert np.array_equal(routes[0].stage >= 0, single.accept(confidence, pred=pred))
    ties = int((human == "tie").sum())
    assert ties > 0
    for calibrator in (single, cascade, grouped):
        # the counts every closing line states, the same attributes on every calibrator
        assert (calibrator.n_calibration_, calibrator.n_ties_dropped_, calibrator.n_used_) == \
            (800, ties, 800 - ties)
        assert calibrator.stage_names_ == ["j"]
        # and one certificate call: data hash, confidence names, model hash, extra, alpha
        certificate = calibrator.certificate("h", confidence_names=["c"], model_hash="m",
                                             extra={"k": 1}, alpha=0.1)
        assert certificate.stages[0]["confidence"] == "c" and certificate.model_hash == "m"
        assert certificate.stages[0]["name"] == "j"
        assert certificate.extra["k"] == 1 and certificate.data_hash == "h"
        assert certificate.extra["n_ties_dropped"] == ties and certificate.extra["n_used"] == 800 - ties
        with pytest.raises(ValueError, match="was not calibrated"):
            calibrator.certificate("h", alpha=0.2)


def test_certify_leaves_the_callers_design_dict_as_given():
    """certify's design wrote design["names"] into the caller's dict (a side effect)."""
    rng = np.random.default_rng(3)
    n = 600
    ids = np.array([f"i{k}" for k in range(n)], dtype=object)
    confidence = rng.uniform(0.5, 1, (n, 2))
    pred = np.full((n, 2), "a", dtype=object)
    human = np.where(rng.random(n) < confidence[:, 1], "a", "b").astype(object)
    train, cal = np.arange(n) < 300, np.arange(n) >= 300
    design = {"train": {"confidence": confidence[train], "pred": pred[train],
                        "human_label": human[train], "ids": ids[train]}, "drop": False}
    before = {key: value for key, value in design.items()}
    stages = [Stage(f"j{l}", CONF, confidence[cal, l], pred[cal, l]) for l in range(2)]
    certified = certify(stages, human[cal], ids[cal], alpha=0.2, design=design)
    assert design.keys() == before.keys() and design["train"] is before["train"]
    assert certified.certificates[0.2].extra["design"]["order"] in (["j0", "j1"], ["j1", "j0"])
    # the same dict certifies again, with the same result
    again = certify(stages, human[cal], ids[cal], alpha=0.2, design=design)
    assert again.certificates[0.2].thresholds == certified.certificates[0.2].thresholds


def test_provenance_hashes_are_exact_on_a_million_distinct_ids():
    ids = np.array([f"pandalm-{k}" for k in range(200_000)], dtype=object)
    assert np.unique(id_hashes(ids)).size == ids.size
    record = provenance_record(ids[::2])
    seen, per_role = seen_rows({"r": record}, ids[:10])
    assert seen.tolist() == [True, False] * 5 and per_role == {"r": 5}
    # the digest is of the set: order and repeats do not change it
    assert provenance_record(list(ids[::2])[::-1] + ["pandalm-0"])["digest"] == record["digest"]


# ---- cascades from the command line (issue 23, item 4) ----------------------------------------

def test_cli_cascade_cheapest_first_with_the_delta_split_and_apply_accepts_it(tmp_path, capsys):
    cheap = _scored(tmp_path / "cheap.parquet", "cheap", seed=3)
    strong = _scored(tmp_path / "strong.parquet", "strong", seed=4)
    out = tmp_path / "cal"
    assert main(["calibrate", str(cheap), str(strong), "--cascade", "--delta-split", "1,3",
                 "--confidence-column", CONF, "--alpha", "0.2", "--delta", "0.1",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "cascade, cheapest first: cheap:" in printed and "strong:" in printed
    certificate = Certificate.read(out / "certificate.json")
    assert [s["name"] for s in certificate.stages] == ["cheap", "strong"]
    assert [s["delta"] for s in certificate.stages] == pytest.approx([0.025, 0.075])
    assert "weights [1.0, 3.0]" in certificate.delta_split
    _assert_bound_and_recorded(certificate, 2)
    # the same numbers as the calibrator itself on the calibration rows
    tables = [pq.read_table(p) for p in (cheap, strong)]
    rows = [t.filter(pa.compute.equal(t.column("split"), "calibration")) for t in tables]
    direct = CascadeCalibrator(alpha=0.2, delta=0.1, delta_split=[1, 3]).calibrate(
        [r.column(CONF).to_numpy() for r in rows],
        [np.asarray(r.column("pred").to_pylist(), object) for r in rows],
        rows[0].column("human_label").to_pylist(), names=["cheap", "strong"])
    assert certificate.thresholds == direct.thresholds_.tolist()
    assert certificate.coverage == pytest.approx(direct.coverage_)
    assert json.loads((out / "summary.json").read_text())["judges"] == ["cheap", "strong"]

    # apply takes the certificate with the matching scored files (a folder of both) ...
    both = tmp_path / "scores"
    both.mkdir()
    for path in (cheap, strong):
        (both / path.name).write_bytes(path.read_bytes())
    assert main(["apply", str(out / "certificate.json"), str(both), "--out", str(tmp_path / "ap")]) == 0
    assert "certificate provenance: digest" in capsys.readouterr().out
    # ... and refuses them when one judge's file is another model's
    _scored(both / "strong.parquet", "strong", seed=4, model="m2")
    assert main(["apply", str(out / "certificate.json"), str(both), "--out", str(tmp_path / "ap2")]) == 2


def test_cli_cascade_needs_two_files_and_several_files_need_cascade(tmp_path, capsys):
    one = _scored(tmp_path / "one.parquet", "one", seed=1)
    two = _scored(tmp_path / "two.parquet", "two", seed=2)
    assert main(["calibrate", str(one), str(two), "--confidence-column", CONF,
                 "--out", str(tmp_path / "a")]) == 2
    assert "without --cascade" in capsys.readouterr().err
    assert main(["calibrate", str(one), "--cascade", "--confidence-column", CONF,
                 "--out", str(tmp_path / "b")]) == 2
    assert "two or more scores files" in capsys.readouterr().err


def test_each_calibrator_refuses_provenance_rows_on_its_own():
    rng = np.random.default_rng(2)
    ids = np.array([f"i{k}" for k in range(500)], dtype=object)
    confidence = rng.uniform(0.5, 1, 500)
    pred = np.full(500, "a", dtype=object)
    human = np.where(rng.random(500) < confidence, "a", "b").astype(object)
    provenance = {"model: trained": provenance_record(ids[[7, 300]])}
    calls = [lambda: SelectiveCalibrator().calibrate(confidence, pred, human, ids=ids, provenance=provenance),
             lambda: CascadeCalibrator().calibrate(confidence, pred, human, ids=ids,
                                                   provenance=provenance),
             lambda: GroupedCalibrator().calibrate(confidence, pred, human, groups=np.array(["x"] * 500),
                                                   ids=ids, provenance=provenance)]
    for call in calls:
        with pytest.raises(ContractError, match="2 of 500 calibration rows .*first id 'i7'"):
            call()
    with pytest.raises(ValueError, match="pass ids"):
        SelectiveCalibrator().calibrate(confidence, pred, human, provenance=provenance)


def test_a_designed_certificate_records_its_design_and_refuses_design_rows(tmp_path):
    """calibrate.design: the grid, start and delta split come from the train split; they are
    recorded, the design rows join the provenance, and a calibration set sharing one is refused."""
    paths = [_scored(tmp_path / f"judge{l}.parquet", f"judge{l}", seed=l) for l in range(2)]
    certificate = _stage(CalibrateConfig(confidence=CONF, design=True, costs=[1, 10]), paths,
                         tmp_path / "out.json")
    design = certificate.extra["design"]
    assert design["order"] == ["judge0", "judge1"] and design["dropped"] == []
    assert sum(design["delta_weights"]) == pytest.approx(1.0)
    assert [s["delta"] for s in certificate.stages] == pytest.approx(
        [0.1 * w for w in design["delta_weights"]])
    for stage_grid in design["stage_grids"]:
        # the train split's 300 rows less human ties, and for the second stage those the first
        # is predicted to leave
        assert stage_grid["source"] == "training rows" and 0 < stage_grid["rows"]["count"] <= 300
    assert certificate.provenance["roles"]["design: rows it read"]["count"] == 300
    # the Python API: a design whose rows include calibration ids is refused like any provenance
    tables = [pq.read_table(p) for p in paths]
    stages = [Stage(p.stem, CONF, t.column(CONF).to_numpy(), np.asarray(t.column("pred").to_pylist(), object))
              for p, t in zip(paths, tables)]
    everything = {"confidence": np.stack([t.column(CONF).to_numpy() for t in tables], axis=1),
                  "pred": np.stack([np.asarray(t.column("pred").to_pylist(), object) for t in tables], axis=1),
                  "human_label": np.asarray(tables[0].column("human_label").to_pylist(), object),
                  "ids": np.asarray(tables[0].column("id").to_pylist(), object)}
    with pytest.raises(ContractError, match="calibration rows"):
        certify(stages, tables[0].column("human_label").to_pylist(), tables[0].column("id").to_pylist(),
                design={"train": everything})


@pytest.mark.parametrize("kind", ["single", "cascade", "grouped"])
def test_the_stage_reports_one_shape_with_its_counts_for_every_kind(kind, tmp_path):
    """calibrate_stage returned a different progress record per kind, without the ties dropped;
    now one record (λ̂, coverage, calibration items, ties dropped, used) for every kind."""
    paths = [_scored(tmp_path / f"judge{l}.parquet", f"judge{l}", seed=l)
             for l in range(2 if kind == "cascade" else 1)]
    settings = CalibrateConfig(confidence=CONF, by="group" if kind == "grouped" else None)
    progress = calibrate_stage(settings, [p.stem for p in paths], [str(p) for p in paths],
                               str(tmp_path / "c.json"), model_folders=[None] * len(paths))
    table = pq.read_table(paths[0])
    calibration = [h for h, s in zip(table.column("human_label").to_pylist(),
                                     table.column("split").to_pylist()) if s == "calibration"]
    ties = calibration.count("tie")
    assert ties > 0
    assert (progress["n_calibration"], progress["n_ties_dropped"], progress["n_used"]) == \
        (len(calibration), ties, len(calibration) - ties)
    certificate = Certificate.read(tmp_path / "c.json")
    assert progress["coverage"] == round(certificate.coverage, 4)
    assert certificate.extra["n_ties_dropped"] == ties
    if kind == "grouped":
        assert progress["groups"] == len(certificate.groups["values"])
        assert all(f"{g}: " in progress["lambda_hat"] for g in certificate.groups["values"])
    else:
        assert progress["lambda_hat"].split() == [f"{t:.4g}" for t in certificate.thresholds]


# ---- the design from the command line (calibrate.design / calibrate.costs as flags) -----------

def _direct_design(paths, names, alpha, delta, costs=None):
    """What ``certify(design=...)`` makes from the same scored files: the design on the train
    rows, the certificate on the calibration rows (the CLI must give the same)."""
    tables = [pq.read_table(p) for p in paths]
    rows = {split: [t.filter(pa.compute.equal(t.column("split"), split)) for t in tables]
            for split in ("train", "calibration")}

    def stacked(split, column, kind):
        return np.stack([np.asarray(t.column(column).to_pylist(), dtype=kind)
                         for t in rows[split]], axis=1)

    train = {"confidence": stacked("train", CONF, float), "pred": stacked("train", "pred", object),
             "human_label": np.asarray(rows["train"][0].column("human_label").to_pylist(), object),
             "ids": np.asarray(rows["train"][0].column("id").to_pylist(), object)}
    calibration = rows["calibration"]
    stages = [Stage(name, CONF, t.column(CONF).to_numpy(),
                    np.asarray(t.column("pred").to_pylist(), object)) for name, t in
              zip(names, calibration)]
    return certify(stages, calibration[0].column("human_label").to_pylist(),
                   calibration[0].column("id").to_pylist(), alpha=alpha, delta=delta,
                   design={"train": train, "costs": costs, "drop": False,
                           "delta_split": "optimised" if len(names) > 1 else "equal"}
                   ).certificates[alpha]


@pytest.mark.parametrize("cascade", [False, True])
def test_cli_design_chooses_on_the_train_rows_as_certify_does(cascade, tmp_path, capsys):
    paths = [_scored(tmp_path / "cheap.parquet", "cheap", seed=3)]
    if cascade:
        paths.append(_scored(tmp_path / "strong.parquet", "strong", seed=4))
    names = ["cheap", "strong"][:len(paths)]
    costs = [1.0, 10.0] if cascade else None
    out = tmp_path / "cal"
    flags = ["--cascade", "--costs", "1,10"] if cascade else []
    assert main(["calibrate", *map(str, paths), *flags, "--design", "--confidence-column", CONF,
                 "--alpha", "0.2", "--delta", "0.1", "--out", str(out)]) == 0, capsys.readouterr()
    certificate = Certificate.read(out / "certificate.json")
    direct = _direct_design(paths, names, 0.2, 0.1, costs)
    assert certificate.extra["design"] == direct.extra["design"]
    assert certificate.thresholds == direct.thresholds
    assert [s["delta"] for s in certificate.stages] == [s["delta"] for s in direct.stages]
    assert certificate.coverage == pytest.approx(direct.coverage)
    # the design read the train rows: they are in the provenance, disjoint from calibration
    assert any(role.startswith("design") for role in certificate.provenance["roles"]), \
        certificate.provenance
    _assert_bound_and_recorded(certificate, len(paths))
    # without --design the grid is the fixed one: a different certificate
    capsys.readouterr()
    assert main(["calibrate", *map(str, paths), *flags[:1], "--confidence-column", CONF,
                 "--alpha", "0.2", "--delta", "0.1", "--out", str(tmp_path / "plain")]) == 0
    assert "design" not in Certificate.read(tmp_path / "plain" / "certificate.json").extra
    assert json.loads((out / "summary.json").read_text())["design"] == certificate.extra["design"]


def test_cli_design_needs_train_rows_and_costs_one_per_judge(tmp_path, capsys):
    cheap = _scored(tmp_path / "cheap.parquet", "cheap", seed=3)
    strong = _scored(tmp_path / "strong.parquet", "strong", seed=4)
    out = tmp_path / "cal"
    assert main(["calibrate", str(cheap), str(strong), "--cascade", "--design", "--costs", "1",
                 "--confidence-column", CONF, "--out", str(out)]) == 2
    assert "calibrate.costs must be a list of 2 numbers >= 0" in capsys.readouterr().err
    no_split = tmp_path / "no_split.parquet"
    pq.write_table(pq.read_table(cheap).drop_columns(["split"]), no_split)
    assert main(["calibrate", str(no_split), "--design", "--confidence-column", CONF,
                 "--out", str(out)]) == 2
    assert "--design needs train rows" in capsys.readouterr().err
    assert not out.exists()
