"""The benchmark protocol: equal budgets, validation-only selection, leak-free extra data."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic import make_synthetic_problem

from gentleclip.app.grid import run_grid, run_one
from gentleclip.data import SemiPairedLoader
from gentleclip.evaluate import retrieval_metrics, zero_shot_metrics
from gentleclip.leakage import filter_unpaired_groups, normalize_text
from gentleclip.losses import Objective
from gentleclip.methods import get_method, with_config
from gentleclip.model import AlignmentModel, ProjectionHead
from gentleclip.pairing import hold_out_pairs, make_pairing_split
from gentleclip.run import HeadConfig, fit_run, prepare_run
from gentleclip.task import AlignmentTask
from gentleclip.train import TrainConfig, Trainer
from gentleclip.validation import ValidationSet


def _task(n: int = 240, with_val: bool = True, metric: str = "mean_recall") -> AlignmentTask:
    fa, fb, labels = make_synthetic_problem(n + 60, n_clusters=4, dim_a=12, dim_b=10, seed=3)
    test_a, test_b = fa[n:, 0], fb[n:, 0]

    def evaluate(embed_a, embed_b):
        m = retrieval_metrics(embed_a(test_a), embed_b(test_b), np.arange(len(test_a)))
        return [{"task": "syn", "dataset": "synthetic", "metric": "mean_recall", "value": m["mean_recall"]}]

    val = None
    if with_val and metric == "mean_recall":
        val = ValidationSet("mean_recall", fa[n - 40:n, 0], fb[n - 40:n, 0], source="items 200-239")
    elif with_val:
        class_b = np.stack([fb[:n][labels[:n] == c, 0][:3] for c in range(4)])  # 3 "prompts" per class
        val = ValidationSet("zeroshot_top1", fa[n - 40:n, 0], labels=labels[n - 40:n], class_b=class_b)
    return AlignmentTask("syn", "synthetic", fa[:n - 40], fb[:n - 40], evaluate, encoders={"a": "a", "b": "b"},
                         validation=val, train_labels=labels[:n - 40])


def _cfg(**kw) -> TrainConfig:
    base = dict(max_steps=12, batch_size=32, lr=3e-3, log_every=1, save_model=False, tensorboard=False,
                device="cpu", eval_every=3, patience=0, checkpoint_every=4)
    return TrainConfig(**{**base, **kw})


# ---------------------------------------------------------------- equal budgets
def test_clip_and_gentle_see_identical_paired_rows() -> None:
    task = _task()
    split = make_pairing_split(len(task.train_a), ratio=0.1, seed=2)
    loaders = {}
    for name in ("clip", "gentle"):
        prepared = prepare_run(task, get_method(name), split, HeadConfig(8, 16), seed=2)
        loaders[name] = SemiPairedLoader(prepared.data, batch_size=16, seed=2)
    c, g = loaders["clip"].composition, loaders["gentle"].composition
    assert c.paired == g.paired == 16, "the same pairs per step, whatever else a method reads"
    assert c.unpaired_a == c.unpaired_b == 0 and g.unpaired_a + g.unpaired_b == 16, "unpaired rows on top"
    for step in range(6):
        bc, bg = loaders["clip"].batch_at(step), loaders["gentle"].batch_at(step)
        np.testing.assert_array_equal(bc.idx_a[:bc.n_paired], bg.idx_a[:bg.n_paired])
        np.testing.assert_array_equal(bc.idx_b[:bc.n_paired], bg.idx_b[:bg.n_paired])
        torch.testing.assert_close(bc.a[:bc.n_paired], bg.a[:bg.n_paired])


def test_run_json_records_the_budget(tmp_path) -> None:
    task = _task()
    cfg = _cfg(patience=0)
    infos = {}
    for name in ("clip", "gentle"):
        _, info, run_dir = run_one(task, get_method(name), 0.1, 0, cfg, HeadConfig(8, 16), tmp_path)
        assert json.loads((run_dir / "run.json").read_text()) == info
        infos[name] = info
    for key in ("pairs_per_step", "max_steps", "n_paired"):
        assert infos["clip"][key] == infos["gentle"][key], key
    assert infos["clip"]["n_paired"] == 20, "10 % of 200 items; all 20 pairs fit in a batch of 32"
    assert infos["clip"]["pairs_seen"] == infos["clip"]["pairs_per_step"] * infos["clip"]["steps"] == 20 * 12
    assert infos["clip"]["unpaired_seen"] == 0 and infos["gentle"]["unpaired_seen"] == 32 * 12
    assert infos["gentle"]["items_per_step"] == 52 and infos["clip"]["items_per_step"] == 20
    assert infos["gentle"]["validation"]["metric"] == "mean_recall"
    assert 0 <= infos["gentle"]["best_step"] <= 12 and infos["gentle"]["best_val"] is not None


# ---------------------------------------------------------------- budget-mode hold-out
def test_hold_out_pairs_takes_validation_from_the_pairs() -> None:
    groups = np.repeat(np.arange(60), 4)
    split = make_pairing_split(240, ratio=0.25, seed=1, groups=groups)
    train, val = hold_out_pairs(split, 0.2, seed=1)
    assert len(val) and set(val) <= set(split.paired) and not set(val) & set(train.paired)
    assert not set(val) & (set(train.unpaired_a) | set(train.unpaired_b)), "held-out pairs join no pool"
    assert len(val) + len(train.paired) == len(split.paired)
    assert abs(len(val) - 0.2 * len(split.paired)) <= 4
    assert not set(groups[val]) & set(groups[train.paired]), "a group never straddles train and validation"
    again, val2 = hold_out_pairs(split, 0.2, seed=1)
    np.testing.assert_array_equal(val, val2)
    one = make_pairing_split(240, n_pairs=1, seed=0)
    assert len(hold_out_pairs(one, 0.2)[1]) == 0, "one pair: nothing to hold out"
    with pytest.raises(ValueError, match="fraction"):
        hold_out_pairs(split, 1.0)


def test_budget_selection_never_trains_on_its_validation_pairs(tmp_path) -> None:
    task = _task()
    fitted = fit_run(task, get_method("clip"), 0.2, 0, _cfg(), HeadConfig(8, 16), tmp_path, selection="budget")
    full = make_pairing_split(len(task.train_a), ratio=0.2, seed=0)
    held = np.setdiff1d(full.paired, fitted.split.paired)
    assert len(held) == round(0.2 * len(full.paired))
    assert fitted.validation is not None and len(fitted.validation) == len(held)
    np.testing.assert_array_equal(fitted.validation.a, task.train_a[held, 0])
    assert fitted.info["n_paired"] == len(full.paired) - len(held)
    zs = _task(metric="zeroshot_top1")
    fitted = fit_run(zs, get_method("clip"), 0.2, 0, _cfg(), HeadConfig(8, 16), tmp_path / "z", selection="budget")
    assert fitted.validation.metric == "zeroshot_top1" and fitted.info["best_val"] is not None


# ---------------------------------------------------------------- validation scores
def test_validation_scores_equal_the_evaluators() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(20, 5)), rng.normal(size=(20, 3, 5))
    v = ValidationSet("mean_recall", a, b)
    ref = retrieval_metrics(a, b.reshape(60, 5), np.repeat(np.arange(20), 3))["mean_recall"]
    assert v.score(lambda x: x, lambda x: x) == pytest.approx(ref)
    labels = rng.integers(0, 4, size=20)
    labels[:5] = -1
    class_b = rng.normal(size=(4, 2, 5))
    z = ValidationSet("zeroshot_top1", a, labels=labels, class_b=class_b)
    assert len(z) == 15, "items without a class are left out"
    ref = zero_shot_metrics(a[5:], labels[5:], class_b)["zeroshot_top1"]
    assert z.score(lambda x: x, lambda x: x) == pytest.approx(ref)
    with pytest.raises(ValueError, match="metric"):
        ValidationSet("accuracy", a, b)
    with pytest.raises(ValueError, match="class_b"):
        ValidationSet("zeroshot_top1", a, labels=labels)


# ---------------------------------------------------------------- early stopping
def _trainer(tmp_path, task, **cfg_kw) -> Trainer:
    torch.manual_seed(0)
    model = AlignmentModel(ProjectionHead(12, 8, 16), ProjectionHead(10, 8, 16))
    split = make_pairing_split(len(task.train_a), ratio=0.2, seed=0)
    data = prepare_run(task, get_method("gentle"), split, HeadConfig(8, 16), 0).data
    from gentleclip.run import _validator

    return Trainer(model, Objective(get_method("gentle").objective), data, _cfg(**cfg_kw), tmp_path,
                   validator=_validator(task.validation))


def test_trainer_ends_with_the_best_validated_weights(tmp_path) -> None:
    task = _task()
    trainer = _trainer(tmp_path, task, max_steps=15)
    result = trainer.fit()
    history = result.validation
    assert [h["step"] for h in history] == [0, 3, 6, 9, 12, 15], "step 0 (untrained heads) is a candidate too"
    best = max(history, key=lambda h: h["score"])
    assert result.best_step == best["step"] and result.best_score == pytest.approx(best["score"])
    from gentleclip.run import _validator

    assert _validator(task.validation)(trainer.model) == pytest.approx(best["score"]), "the model holds the best"
    saved = json.loads((tmp_path / "validation.json").read_text())
    assert saved["best_step"] == result.best_step


def test_early_stopping_after_patience(tmp_path) -> None:
    task = _task()
    scores = iter([1.0, 2.0, 1.5, 1.4, 1.3, 9.0, 9.0])
    torch.manual_seed(0)
    model = AlignmentModel(ProjectionHead(12, 8, 16), ProjectionHead(10, 8, 16))
    split = make_pairing_split(len(task.train_a), ratio=0.2, seed=0)
    data = prepare_run(task, get_method("clip"), split, HeadConfig(8, 16), 0).data
    trainer = Trainer(model, Objective(get_method("clip").objective), data, _cfg(max_steps=30, patience=3),
                      tmp_path, validator=lambda m: next(scores))
    result = trainer.fit()
    assert result.early_stopped and result.steps == 12, "3 evaluations without improvement after step 3"
    assert result.best_step == 3 and result.best_score == 2.0
    again = Trainer(model, Objective(get_method("clip").objective), data, _cfg(max_steps=30, patience=3),
                    tmp_path, validator=lambda m: pytest.fail("a finished run is not trained or scored again"))
    assert again.fit(resume=True).steps == 12


class _Killed(Exception):
    pass


def _kill_at(step: int):
    def cb(trainer, done, terms):
        if done == step:
            raise _Killed(step)

    return cb


def test_resume_with_validation_is_exact(tmp_path) -> None:
    """A crash between checkpoints (after a validation that the checkpoint does not hold yet):
    the resumed run repeats those steps and ends with the same history, step and weights."""
    task = _task()
    full_trainer = _trainer(tmp_path / "full", task, max_steps=20, patience=3)
    full = full_trainer.fit()
    part = _trainer(tmp_path / "part", task, max_steps=20, patience=3)
    part.callbacks.append(_kill_at(7))  # validated at 6, last checkpoint at 4
    with pytest.raises(_Killed):
        part.fit()
    resumed_trainer = _trainer(tmp_path / "part", task, max_steps=20, patience=3)
    resumed = resumed_trainer.fit(resume=True)
    assert resumed.resumed_from == 4, "resumed from the last checkpoint"
    assert resumed.validation == full.validation and resumed.best_step == full.best_step
    assert resumed.steps == full.steps and resumed.early_stopped == full.early_stopped
    for k, v in full_trainer.model.state_dict().items():
        torch.testing.assert_close(resumed_trainer.model.state_dict()[k], v, rtol=0, atol=1e-6)


def test_validator_needs_eval_every(tmp_path) -> None:
    task = _task()
    with pytest.raises(ValueError, match="eval_every"):
        _trainer(tmp_path, task, eval_every=0)


# ---------------------------------------------------------------- leak-free extra data
def test_normalize_text() -> None:
    assert normalize_text("  Many  GREEN trees, near a pond. ") == "many green trees near a pond"


def test_filter_drops_copies_and_equal_captions() -> None:
    task_items = [["A plane is parked.", "Two planes near a runway", "a white plane", "planes", "an airport"],
                  ["many trees", "a forest", "green trees", "dense forest", "woods"]]
    extra = [["a plane is parked", "TWO PLANES NEAR A RUNWAY.", "x", "y", "z"],  # 2 captions of item 0: whole
             ["a beach", "many trees", "sea waves", "sand", "blue water"],  # one equal caption: dropped alone
             ["woods", "Woods!"],  # nothing left
             ["a harbour", "boats", "ships", "a pier", "water"]]
    kept, index, report = filter_unpaired_groups(extra, task_items)
    assert index.tolist() == [1, 3]
    assert kept[0] == ["a beach", "sea waves", "sand", "blue water"]
    assert report["n_groups_removed_copy"] == 1 and report["n_groups_removed_empty"] == 1
    assert report["n_texts_removed_equal"] == 3 and report["n_groups_kept"] == 2 and report["n_texts_kept"] == 9


def test_extra_group_copying_a_test_image_never_reaches_a_pool(tmp_path) -> None:
    """An extra caption group that copies a test image's captions is dropped whole, an extra caption
    equal to an RSICD caption is dropped alone, and no RSICD caption reaches the unpaired-B pool."""
    from test_rs_fixtures import make_fake_remote_sensing

    from domains.remote_sensing import RemoteSensingAdapter

    rs = make_fake_remote_sensing(tmp_path / "data")
    rsicd = json.loads((rs / "rsicd" / "dataset_rsicd.json").read_text())
    test_caps = [[s["raw"] for s in im["sentences"]] for im in rsicd["images"] if im["split"] == "test"]
    all_caps = {normalize_text(s["raw"]) for im in rsicd["images"] for s in im["sentences"]}
    copied = [test_caps[0][0].upper(), test_caps[0][1], test_caps[0][2] + " !", "own caption one", "own caption two"]
    caps = rs / "rsitmd" / "captions"
    (caps / "train_filename.txt").write_text((caps / "train_filename.txt").read_text() + "copy_9.tif\n")
    (caps / "train_caps.txt").write_text((caps / "train_caps.txt").read_text() + "\n".join(copied) + "\n")
    syd = caps.parent.parent / "sydney" / "captions" / "captions_train2014.json"
    coco = json.loads(syd.read_text())
    coco["annotations"][0]["caption"] = test_caps[1][3]  # one caption of group 0 equals a test caption
    syd.write_text(json.dumps(coco))
    adapter = RemoteSensingAdapter(rs, cache_dir=tmp_path / "cache", image_encoder=_TinyImageEncoder(),
                                   text_encoder=_ExactTextEncoder(), n_views=1, ucm=False)
    task = adapter.build_task()
    report = task.info["extra_text_filter"]
    assert report["n_groups_removed_copy"] == 1 and report["n_texts_removed_equal"] == 1
    enc = _ExactTextEncoder()
    pool = {row.tobytes() for row in task.extra_unpaired_b.reshape(-1, enc.dim)}
    assert not pool & {enc.encode([t])[0].tobytes() for t in all_caps}, "no RSICD caption in the unpaired-B pool"
    assert enc.encode(["own caption one"])[0].tobytes() not in pool, "the copying group is dropped whole"
    kept = coco["annotations"][1]["caption"]
    assert enc.encode([kept])[0].tobytes() in pool, "the rest of a group with one equal caption stays"
    val = adapter.rsicd().split("val")
    assert task.validation is not None and len(task.validation) == len(val)


def test_real_rsicd_no_test_caption_in_any_training_pool(shared_data) -> None:
    """On the real data: no RSICD test caption is among the training captions or the extra unpaired
    text (RSITMD re-uses RSICD captions), and no test image is a training image."""
    from domains.remote_sensing import RemoteSensingAdapter

    adapter = RemoteSensingAdapter(shared_data / "remote_sensing", cache_dir="/nonexistent-cache-not-used")
    with pytest.warns(Warning):  # RSITMD's empty caption lines are reported and skipped
        text = adapter.training_text()
    test = adapter.rsicd().split("test")
    test_caps = {normalize_text(c) for r in test for c in r.captions}
    every = {normalize_text(c) for r in adapter.rsicd() for c in r.captions}
    assert not {normalize_text(c) for g in text.train_groups for c in g} & test_caps
    assert not {normalize_text(c) for g in text.extra_groups for c in g} & every
    assert not {r.image_id for r in text.records} & {r.image_id for r in test}
    leak = text.report["extra_text_filter"]
    assert leak["n_groups_removed_copy"] > 100 and leak["n_texts_removed_equal"] > 1000, leak
    assert text.report["train_caption_filter"]["n_captions_removed_equal_to_test"] > 0


class _ExactTextEncoder:
    """Feature = a hash of the normalised text: two texts share features exactly when they are equal."""

    name, identity, dim = "exact-text", "exact-text-v1", 8

    def encode(self, texts, view=0):
        import hashlib

        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            digest = hashlib.sha256(normalize_text(t).encode()).digest()
            out[i] = np.frombuffer(digest[:self.dim * 4], dtype=np.uint32) / 2**32
        return out


class _TinyImageEncoder:
    name, identity, dim = "tiny-image", "tiny-image-v1", 4

    def encode(self, items, view=0):
        return np.asarray([[len(str(getattr(it, "path", it))) % 7, view, 1.0, 2.0] for it in items], np.float32)


# ---------------------------------------------------------------- tuning
def test_tune_method_selects_on_validation_and_is_resumable(tmp_path) -> None:
    from gentleclip.app.tune import default_params, search_space, tune_method

    task = _task()
    method = get_method("gentle")
    cfg = _cfg(max_steps=6, eval_every=3)
    tested = []
    task = replace(task, evaluate=lambda a, b: tested.append(1) or [])
    rec = tune_method(task, method, [0.1, 0.2], 3, cfg, HeadConfig(8, 16), tmp_path, seed=0)
    assert not tested, "tuning never scores the test split"
    assert len(rec["trials"]) == 3 and rec["trials"][0]["params"] == default_params(method, cfg.lr)
    assert set(rec["search_space"]) == set(search_space(method)) >= {"temperature", "lr", "sdd", "mmd",
                                                                     "clip_unpaired_negatives"}
    best = max(rec["trials"], key=lambda t: t["mean_val"])
    assert rec["best"]["mean_val"] == best["mean_val"]
    assert rec["best"]["train"]["lr"] == best["params"]["lr"]
    for t in rec["trials"]:
        assert t["mean_val"] == pytest.approx(np.mean(list(t["val"].values())))
    runs = sorted(p.parent for p in tmp_path.rglob("run.json"))
    assert not any((r / "rows.json").exists() for r in runs)
    again = tune_method(task, method, [0.1, 0.2], 3, cfg, HeadConfig(8, 16), tmp_path, seed=0)
    assert again["trials"] == rec["trials"], "a rerun reads the finished trials back"
    assert sorted(p.parent for p in tmp_path.rglob("run.json")) == runs
    assert json.loads((tmp_path / "selection" / "gentle.json").read_text())["best"] == rec["best"]


def test_a_configuration_that_cannot_run_at_a_tuning_ratio_is_scored_on_the_others(tmp_path) -> None:
    from gentleclip.app.tune import tune_method

    task, method, cfg = _task(), get_method("sue"), _cfg(max_steps=6, eval_every=3)
    # 200 training rows: 2 % are 4 pairs, fewer than any CCA size in SUE's space; 20 % are 40
    rec = tune_method(task, method, [0.02, 0.2], 2, cfg, HeadConfig(8, 16), tmp_path, seed=0)
    for t in rec["trials"]:
        assert set(t["not_applicable"]) == {"0.02"} and "cannot give" in t["not_applicable"]["0.02"]
        assert set(t["val"]) == {"0.2"} and t["mean_val"] == t["val"]["0.2"]
    assert rec["best"]["mean_val"] == max(t["mean_val"] for t in rec["trials"])
    with pytest.raises(ValueError, match="none of the tuning ratios"):
        tune_method(task, method, [0.02], 2, cfg, HeadConfig(8, 16), tmp_path / "none", seed=0)


def test_tune_missing_selects_only_the_methods_without_a_preset(tmp_path, monkeypatch) -> None:
    import argparse

    import gentleclip.app.tune as tune_module
    import gentleclip.methods as methods_module
    from gentleclip.app.grid import GridSpec, resolve_configs

    presets = tmp_path / "presets.json"
    presets.write_text(json.dumps({"syn": {"clip": {"objective": {"temperature": 0.1}, "train": {"lr": 3e-3}}}}))
    monkeypatch.setattr(methods_module, "PRESETS_PATH", presets)
    tuned = []

    def fake_tune(task, method, *args, **kwargs):
        tuned.append(method.name)
        return {"best": {"objective": {"structure": 2.0}, "train": {"lr": 3e-4}}}

    monkeypatch.setattr(tune_module, "tune_method", fake_tune)
    spec = GridSpec([get_method("clip"), get_method("structure")], [0.1], [0], [0.1], _cfg())
    args = argparse.Namespace(tune=False, tune_missing=True, no_presets=False, trials=12, out=str(tmp_path),
                              tune_seed=0, selection="val", write_presets=False)
    methods, overrides, record = resolve_configs(_task(), spec, args, HeadConfig(8, 16))
    assert tuned == ["structure"]  # clip has a preset for this task and runs it
    assert methods[0].objective.temperature == 0.1 and overrides["clip"] == {"lr": 3e-3}
    assert methods[1].objective.structure == 2.0 and record["structure"]["source"].startswith("tuned here")


def test_ablations_run_their_base_methods_configuration_with_the_terms_off(tmp_path, monkeypatch) -> None:
    import argparse

    import gentleclip.app.tune as tune_module
    import gentleclip.methods as methods_module
    from gentleclip.app.grid import GridSpec, resolve_configs

    selected = {"objective": {"sdd": 1.3, "mmd": 0.4, "ssl_a": 0.07, "ssl_b": 0.3, "temperature": 0.1},
                "train": {"lr": 3e-4}}
    presets = tmp_path / "presets.json"
    presets.write_text(json.dumps({"syn": {"gentle": selected}}))
    monkeypatch.setattr(methods_module, "PRESETS_PATH", presets)
    tuned = []
    monkeypatch.setattr(tune_module, "tune_method", lambda task, method, *a, **k: tuned.append(method.name) or
                        {"best": {"objective": {"sdd": 0.2, "mmd": 0.9}, "train": {"lr": 1e-2}}})
    names = ["gentle-no-sdd", "gentle-no-mmd", "gentle-no-ssl", "sdd"]
    spec = GridSpec([get_method(n) for n in names], [0.1], [0], [0.1], _cfg())
    args = argparse.Namespace(tune=False, tune_missing=True, no_presets=False, trials=12, out=str(tmp_path),
                              tune_seed=0, selection="val", write_presets=False)
    methods, overrides, record = resolve_configs(_task(), spec, args, HeadConfig(8, 16))
    assert tuned == [], "an ablation is not tuned on its own"
    got = {m.name: m.objective for m in methods}
    assert (got["gentle-no-sdd"].sdd, got["gentle-no-sdd"].mmd, got["gentle-no-sdd"].ssl_b) == (0.0, 0.4, 0.3)
    assert (got["gentle-no-mmd"].sdd, got["gentle-no-mmd"].mmd) == (1.3, 0.0)
    assert (got["gentle-no-ssl"].ssl_a, got["gentle-no-ssl"].ssl_b, got["gentle-no-ssl"].sdd) == (0.0, 0.0, 1.3)
    assert (got["sdd"].sdd, got["sdd"].mmd, got["sdd"].ssl_a, got["sdd"].temperature) == (1.3, 0.0, 0.0, 0.1)
    assert all(overrides[n] == {"lr": 3e-4} for n in names)
    assert "not tuned on its own" in record["sdd"]["source"]
    # with the base method in a tuned grid, the ablations take what validation selected for it
    spec = GridSpec([get_method("gentle"), get_method("gentle-no-mmd")], [0.1], [0], [0.1], _cfg())
    methods, overrides, _ = resolve_configs(_task(), spec, argparse.Namespace(**{**vars(args), "tune": True,
                                                                                    "tune_missing": False}),
                                            HeadConfig(8, 16))
    assert tuned == ["gentle"] and (methods[1].objective.sdd, methods[1].objective.mmd) == (0.2, 0.0)
    assert overrides["gentle-no-mmd"] == {"lr": 1e-2}
    with pytest.raises(ValueError, match="add its base method 'gentle'"):
        resolve_configs(_task(), GridSpec([get_method("sdd")], [0.1], [0], [0.1], _cfg()),
                        argparse.Namespace(**{**vars(args), "tune": True, "tune_missing": False}), HeadConfig(8, 16))


def test_gentle_reference_is_the_official_recipe() -> None:
    m = get_method("gentle-reference")
    o = m.objective
    assert (o.clip, o.sdd, o.mmd, o.ssl_a, o.ssl_b, o.temperature) == (1.0, 0.7, 0.2, 0.15, 0.15, 0.05)
    assert (o.sdd_normalize, o.sdd_spread, o.mmd_kernel_num, o.mmd_bandwidth) == (False, "range", 1, 1.0)
    assert o.clip_unpaired_negatives and not m.tunable
    assert with_config(get_method("gentle"), {"sdd": 0.3}).objective.sdd == 0.3
    with pytest.raises(ValueError, match="bad objective"):
        with_config(m, {"nonsense": 1})


def test_grid_uses_selected_configs_and_reads_runs_back(tmp_path) -> None:
    task = _task()
    cfg = _cfg(max_steps=6)
    methods = [with_config(get_method("gentle"), {"sdd": 0.3}), "clip"]
    res = run_grid(task, methods, [0.1], [0], cfg, tmp_path, HeadConfig(8, 16),
                   train_overrides={"gentle": {"lr": 1e-2}})
    info = json.loads(next((tmp_path / "runs" / "syn" / "gentle").rglob("run.json")).read_text())
    assert info["objective"]["sdd"] == 0.3 and info["lr"] == 1e-2
    again = run_grid(task, methods, [0.1], [0], cfg, tmp_path, HeadConfig(8, 16),
                     train_overrides={"gentle": {"lr": 1e-2}})
    assert again.rows == res.rows


def test_unknown_objective_key_in_run_config() -> None:
    from gentleclip.app.config import ConfigError, RunConfig

    cfg = RunConfig(objective={"sdd": 0.3, "clip_unpaired_negatives": False})
    assert cfg.to_dict()["objective"] == {"sdd": 0.3, "clip_unpaired_negatives": False}
    with pytest.raises(ConfigError, match="objective: unknown key"):
        RunConfig(objective={"sd": 0.3})
    with pytest.raises(ConfigError, match="selection"):
        RunConfig(selection="test")
    assert cfg.train.max_steps == 300 and cfg.train.eval_every == 25, "gentleclip train uses the grid's defaults"


def test_compact_tables_print_methods_by_ratios() -> None:
    from gentleclip.app.report import Results, compact_tables

    res = Results()
    for m in ("clip", "gentle"):
        for r in (0.0, 0.1):
            for s in (0, 1):
                res.add("t", "d", m, r, s, "mean_recall", 10 * r + s + (m == "gentle"))
    text = compact_tables(res, ["mean_recall", "missing"], skip_missing=True)
    lines = text.splitlines()
    assert lines[0].startswith("**mean_recall** ↑") and "| method | 0 | 0.1 |" in lines
    assert "| gentle | 1.5 ± 0.71 | 2.5 ± 0.71 |" in lines
    with pytest.raises(ValueError, match="no rows"):
        compact_tables(res, ["missing"])



@pytest.mark.parametrize("argv, needle", [
    (["--methods", "foo"], "unknown method 'foo'"),
    (["--ratios", "1.5"], "outside [0, 1]"),
    (["--steps", "-5"], "--steps must be >= 1"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--write-presets"], "needs --tune"),
    (["--tune-missing", "--tune"], "goes with neither"),
    (["--device", "cuda"], "no CUDA GPU"),
])
def test_benchmark_options_fail_before_any_feature(tmp_path, argv, needle) -> None:
    """A bad option is an error naming it, before features are computed or an output folder is made."""
    import importlib.util

    if needle == "no CUDA GPU" and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    repo = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("run_protein", repo / "benchmarks" / "run_protein.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out, cache = tmp_path / "out", tmp_path / "cache"
    with pytest.raises(ValueError) as err:
        module.main([*argv, "--out", str(out), "--cache-dir", str(cache)])
    assert needle in str(err.value)
    assert not out.exists() and not cache.exists()


def test_benchmark_out_naming_a_file_is_refused(tmp_path) -> None:
    import importlib.util

    repo = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("run_rs", repo / "benchmarks" / "run_remote_sensing.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (tmp_path / "file.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a folder"):
        module.main(["--data-dir", str(tmp_path), "--out", str(tmp_path / "file.txt")])
    assert (tmp_path / "file.txt").read_text() == "mine"


def test_benchmark_script_turns_a_missing_description_into_one_line(tmp_path) -> None:
    """run_protein.py on a descriptions table with a missing row: one line and exit 2 (not a traceback),
    and --on-error skip reads the rest."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), size=60)) for _ in range(40)]
    (tmp_path / "p.fasta").write_text("".join(f">P{i}\n{s}\n" for i, s in enumerate(seqs)))
    (tmp_path / "p.tsv").write_text("accession\tfunction\n" + "".join(f"P{i}\tfunction {i}\n" for i in range(39)))
    cmd = [sys.executable, str(repo / "benchmarks" / "run_protein.py"), "--data-dir", str(tmp_path / "p.fasta"),
           "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out"), "--cluster-method", "kmer",
           "--methods", "clip", "--ratios", "0", "--seeds", "0", "--steps", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("run_protein.py: error:") and "'P39' has no row" in last and "Traceback" not in proc.stderr
    proc = subprocess.run(cmd + ["--on-error", "skip"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "'P39' has no row" in proc.stderr, "the skipped record is reported"
    assert json.loads((tmp_path / "out" / "config.json").read_text())["data"]["n_records_read"] == 39


def test_benchmark_script_debug_flag_shows_the_traceback(tmp_path) -> None:
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, str(repo / "benchmarks" / "run_protein.py"), "--methods", "foo", "--out", str(tmp_path)]
    plain = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    debug = subprocess.run(cmd + ["--debug"], capture_output=True, text=True, timeout=120)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "unknown method 'foo'" in debug.stderr


def test_chance_levels_are_what_an_uninformative_joint_space_scores(tmp_path) -> None:
    """Independent Gaussian embeddings score 100/C on zero-shot top-1 and k/N on retrieval R@k;
    run_benchmark writes them beside the results (chance.json) for the zero-pairs table."""
    import argparse

    from gentleclip.app.grid import add_grid_arguments, chance_levels, run_benchmark
    from gentleclip.evaluate import zero_shot_metrics

    n, c = 3000, 10
    rng = np.random.default_rng(0)
    labels = rng.integers(0, c, n)

    def evaluate(embed_a, embed_b):
        xa, xb = rng.standard_normal((n, 12)), rng.standard_normal((n, 10))  # the task's feature widths
        zs = zero_shot_metrics(embed_a(xa), labels, embed_b(xb[:c]))
        rt = retrieval_metrics(embed_a(xa[:500]), embed_b(xb[:500]), np.arange(500), ks=(1, 10))
        return [{"task": "t", "dataset": "d", "metric": k, "value": v} for k, v in
                (("zeroshot_top1", zs["zeroshot_top1"]), ("a2b_R@10", rt["a2b_R@10"]))]

    task = replace(_task(), evaluate=evaluate)
    got = {r["metric"]: r["value"] for r in chance_levels(task, 16, [0, 1, 2])}
    assert got["zeroshot_top1"] == pytest.approx(100 / c, abs=1.0)
    assert got["a2b_R@10"] == pytest.approx(100 * 10 / 500, abs=1.0)
    assert chance_levels(task, 16, [0, 1, 2]) == chance_levels(task, 16, [0, 1, 2]), "seeded"
    parser = argparse.ArgumentParser()
    add_grid_arguments(parser, methods="clip", ratios="0.1", seeds="0", out=str(tmp_path / "out"))
    args = parser.parse_args(["--steps", "3", "--batch-size", "16", "--eval-every", "3", "--no-presets",
                              "--device", "cpu"])
    run_benchmark(task, args, plot_metrics=[], head_config=HeadConfig(8, 16))
    written = json.loads((tmp_path / "out" / "chance.json").read_text())
    assert written["seeds"] == [0] and {r["metric"] for r in written["rows"]} == {"zeroshot_top1", "a2b_R@10"}


def test_quick_is_one_seed_two_ratios_no_tuning_and_its_own_folder() -> None:
    import argparse

    from gentleclip.app.grid import add_grid_arguments, check_grid_arguments

    parser = argparse.ArgumentParser()
    add_grid_arguments(parser, out="benchmarks/out/protein")
    args = parser.parse_args(["--quick"])
    spec = check_grid_arguments(args)
    assert spec.seeds == [0] and spec.ratios == [0.0, 0.05] and args.out == "benchmarks/out/protein-quick"
    args = parser.parse_args(["--quick", "--out", "mine"])
    check_grid_arguments(args)
    assert args.out == "mine"
    with pytest.raises(ValueError, match="--quick runs the presets"):
        check_grid_arguments(parser.parse_args(["--quick", "--tune"]))


def test_objective_overrides_vary_every_method_after_its_preset(tmp_path, monkeypatch) -> None:
    import argparse

    import gentleclip.methods as methods_module
    from gentleclip.app.grid import GridSpec, add_grid_arguments, check_grid_arguments, resolve_configs

    presets = tmp_path / "presets.json"
    presets.write_text(json.dumps({"syn": {"gentle": {"objective": {"sdd": 1.3, "temperature": 0.1},
                                                      "train": {"lr": 3e-4}}}}))
    monkeypatch.setattr(methods_module, "PRESETS_PATH", presets)
    parser = argparse.ArgumentParser()
    add_grid_arguments(parser)
    args = parser.parse_args(["--methods", "gentle", "--objective", "clip_unpaired_negatives=true",
                              "--objective", "mmd=0", "--out", str(tmp_path / "out")])
    check_grid_arguments(args)
    spec = GridSpec([get_method("gentle")], [0.1], [0], [0.1], _cfg())
    methods, overrides, record = resolve_configs(_task(), spec, args, HeadConfig(8, 16))
    o = methods[0].objective
    assert (o.sdd, o.temperature, o.mmd, o.clip_unpaired_negatives) == (1.3, 0.1, 0.0, True)
    assert overrides["gentle"] == {"lr": 3e-4} and record["gentle"]["objective_overrides"]["mmd"] == 0
    for argv, needle in ((["--objective", "nonsense=1"], "bad objective"), (["--objective", "sdd"], "KEY=VALUE"),
                         (["--objective", "sdd=1", "--tune"], "goes with neither")):
        with pytest.raises(ValueError, match=needle):
            check_grid_arguments(parser.parse_args(["--methods", "gentle", "--out", str(tmp_path / "o"), *argv]))
