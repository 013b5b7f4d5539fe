from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cosingan.gan.augment import deform_bank
from cosingan.gan.config import FORMAT_VERSION
from cosingan.errors import InputError
from cosingan.data.readers import load_slice
from cosingan.synth.sample import sample_run
from cosingan.gan import TrainedRun, train
from cosingan.gan.checkpoint import CKPT, load_checkpoint

from conftest import tiny


def _weights(run):
    return torch.load(run / CKPT, weights_only=True)["model"]


def test_run_folder_contents_and_weights_only_checkpoint(tmp_path, phantom_files):
    sl = load_slice(*phantom_files)
    t = train(tmp_path / "run", sl, tiny(), progress=False)
    run = tmp_path / "run"
    ck = torch.load(run / CKPT, weights_only=True)  # plain dict, no pickled classes
    assert ck["done"] and ck["format_version"] == FORMAT_VERSION
    assert int(ck["model"]["trained"]) == t.model.num_scales
    amps = ck["model"]["noise_amp"]
    assert amps[0] == 1.0 and torch.all(amps[1:] > 0) and torch.all(amps[1:] < 1)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["preset"] == "tiny" and "torch" in cfg["versions"] and cfg["format_version"] == FORMAT_VERSION
    assert (run / "curves.png").stat().st_size > 0
    assert sorted(p.name for p in (run / "samples").iterdir()) == [f"stage_{i:02d}.png" for i in range(t.model.num_scales)]
    lines = (run / "log.csv").read_text().splitlines()
    assert lines[0].startswith("step,stage,iter") and len(lines) == 1 + t.model.num_scales * t.tc.iters
    assert not list(run.glob(".*.cosingan-tmp"))  # no temp files left behind
    loaded = TrainedRun.from_pretrained(run).model  # trained and sampled channels-last on the CPU
    for m in (t.model, loaded):
        assert m.gens[-1].structure[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_resume_equals_uninterrupted_training(tmp_path, phantom_files):
    sl = load_slice(*phantom_files)
    cfg = tiny()
    train(tmp_path / "a", sl, cfg, progress=False)
    b = tmp_path / "b"
    train(b, sl, cfg, stop_after=4, progress=False)  # stops mid-stage 1
    ck = load_checkpoint(b)
    assert not ck["done"] and (ck["stage"], ck["iter"]) == (0, 4)
    train(b, None, None, stop_after=5, progress=False)  # crosses a stage boundary, stops mid-stage 2
    assert (load_checkpoint(b)["stage"], load_checkpoint(b)["iter"]) == (1, 3)
    with pytest.raises(InputError, match="not finished"):
        TrainedRun.from_pretrained(b)
    train(b, None, None, progress=False)
    wa, wb = _weights(tmp_path / "a"), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"{k} differs after resume"


def test_new_run_refuses_an_existing_run_folder(tmp_path, phantom_files):
    sl = load_slice(*phantom_files)
    train(tmp_path / "r", sl, tiny(), progress=False)
    with pytest.raises(InputError, match="already holds a run"):
        train(tmp_path / "r", sl, tiny(), progress=False)


@pytest.mark.parametrize("part", ["two_stage", "mixed_rec", "hier_aug"])
@pytest.mark.parametrize("on", [True, False])
def test_each_cosingan_part_switches(tmp_path, phantom_files, part, on):
    sl = load_slice(*phantom_files)
    over = {"model": {"two_stage": on}} if part == "two_stage" else {"train": {part: on}}
    t = train(tmp_path / "r", sl, tiny(**over), progress=False)
    keys = set().union(*t.log)
    if part == "two_stage":
        assert (t.model.lung_critics is not None) == on
        assert all((g.refine is not None) == on for g in t.model.gens)
        assert ("wdist_lung" in keys) == on
    elif part == "mixed_rec":
        assert ("rec_teacher" in keys) == on and ("rec_ssim" in keys) == on
    else:
        assert (len(t.bank) > 0) == on
    assert np.isfinite([e["rec"] for e in t.log]).all()


def test_augmentation_bank_keeps_maps_valid_and_differs(phantom_pair):
    from cosingan.data.labelmap import body_from_image, to_label4

    img, lab = phantom_pair
    l4 = to_label4(lab, body_from_image(img, lab))
    bank = deform_bank(img, l4, 6, seed=3)
    assert len(bank) == 6
    for bi, bl in bank:
        assert bi.shape == img.shape and bl.shape == l4.shape
        assert set(np.unique(bl)) <= {0, 1, 2, 3} and (bl >= 2).any()
        assert bi.min() >= -1 and bi.max() <= 1
    assert sum(not np.array_equal(bl, l4) for _, bl in bank) >= 5
    again = deform_bank(img, l4, 6, seed=3)  # deterministic for a seed (resume rebuilds it)
    assert all(np.array_equal(a[1], b[1]) and np.array_equal(a[0], b[0]) for a, b in zip(bank, again))


def test_sampling_draws_two_at_once_on_the_cpu_and_the_batch_changes_no_image(tiny_run):
    run = TrainedRun.from_pretrained(tiny_run)
    assert run.batch == 2  # larger batches overflow the CPU's caches (docs/performance.md)
    lab, seeds = run.train_label4, [3, 1, 4, 1, 5]
    default = run(lab, seeds)
    for b in (1, 5):
        assert np.abs(run(lab, seeds, b) - default).max() < 1e-5
    with pytest.raises(ValueError, match="batch must be at least 1"):
        run(lab, seeds, 0)


def test_bf16_sampling_draws_the_same_images_to_bf16_rounding_and_unknown_precisions_are_refused(tiny_run):
    fp32 = TrainedRun.from_pretrained(tiny_run)
    bf16 = TrainedRun.from_pretrained(tiny_run, precision="bf16")
    lab, seeds = fp32.train_label4, [3, 1, 4]
    a, b = fp32(lab, seeds), bf16(lab, seeds)
    assert b.dtype == np.float32 and b.shape == a.shape
    assert 0 < np.abs(a - b).mean() < 0.02  # bf16's 8-bit mantissa, not another image
    assert np.array_equal(b, bf16(lab, seeds))  # deterministic too
    assert bf16.batch == 4 and fp32.batch == 2  # bf16's activations are half the bytes: twice as many fit
    with pytest.raises(InputError, match="--precision must be one of fp32, bf16"):
        TrainedRun.from_pretrained(tiny_run, precision="fp16")


def test_sampling_is_deterministic_and_diverse(tmp_path, phantom_files):
    sl = load_slice(*phantom_files)
    train(tmp_path / "r", sl, tiny(), progress=False)
    sample_run(tmp_path / "r", 3, tmp_path / "s1", seed=5, progress=False)
    sample_run(tmp_path / "r", 3, tmp_path / "s2", seed=5, progress=False, batch=1)
    sample_run(tmp_path / "r", 3, tmp_path / "s3", seed=6, progress=False)
    sample_run(tmp_path / "r", 3, tmp_path / "s4", seed=5, progress=False)
    names = sorted(p.name for p in (tmp_path / "s1" / "images").iterdir())
    assert names == ["train_0000.png", "train_0001.png", "train_0002.png"]
    from PIL import Image

    for n in names:  # same seed -> same bytes; another batch size -> the same image to float rounding
        assert (tmp_path / "s1" / "images" / n).read_bytes() == (tmp_path / "s4" / "images" / n).read_bytes()
        one, two = (np.asarray(Image.open(tmp_path / s / "images" / n), dtype=float) for s in ("s1", "s2"))
        assert np.abs(one - two).max() <= 1
    a = [np.asarray(Image.open(tmp_path / "s1" / "images" / n), dtype=float) for n in names]
    c = np.asarray(Image.open(tmp_path / "s3" / "images" / names[0]), dtype=float)
    assert np.abs(a[0] - a[1]).mean() > 0.5  # samples differ from each other
    assert np.abs(a[0] - c).mean() > 0.5  # and with the seed


def test_bf16_mixed_precision_trains_and_samples(tmp_path, phantom_files):
    """The GPU's mixed-precision path, exercised on CPU autocast: finite losses, float32 weights."""
    sl = load_slice(*phantom_files)
    tr = train(tmp_path / "r", sl, tiny(train={"amp": "bf16"}), progress=False)
    assert all(np.isfinite([e["d_loss"], e["rec"], e["adv"]]).all() for e in tr.log)
    assert all(p.dtype == torch.float32 for p in tr.model.parameters())
    model = TrainedRun.from_pretrained(tmp_path / "r").model
    assert model.noise_amp.dtype == torch.float32


def test_unknown_amp_mode_is_refused(tmp_path, phantom_files):
    with pytest.raises(InputError, match="amp must be none or bf16"):
        train(tmp_path / "r", load_slice(*phantom_files), tiny(train={"amp": "fp16"}), progress=False)
    assert not (tmp_path / "r").exists()


def test_few_shot_generator_shares_one_pyramid_over_several_slices(tmp_path):
    """Several slices (of different shapes) train one pyramid: each keeps its own reconstruction noise,
    the run knows every pair, resumes bit-identically, and samples / synthesizes on every training map."""
    from cosingan.cli import main
    from cosingan.data.files import save_png
    from cosingan.data.phantom import chest_phantom

    files = []
    for k, crop in enumerate((None, 6)):
        img, lab = chest_phantom(40, seed=30 + k)
        if crop:  # a narrower slice: the pairs share a canvas, padded with air
            img, lab = img[:, crop:-crop], lab[:, crop:-crop]
        files.append((tmp_path / f"i{k}.png", tmp_path / f"l{k}.png"))
        save_png(img, files[-1][0])
        save_png(lab, files[-1][1])
    slices = [load_slice(i, l) for i, l in files]
    cfg = tiny()
    a = train(tmp_path / "a", slices, cfg, progress=False)
    assert a.model.pairs == 2 and a.image.shape[0] == 2 and a.image.shape[1:] == (32, 32)
    assert (a.label4[1][:, :2] == 0).all() and (a.image[1][:, :2] == -1).all()  # the narrow one, padded with air
    b = tmp_path / "b"
    train(b, slices, cfg, stop_after=7, progress=False)
    train(b, None, None, progress=False)
    wa, wb = _weights(tmp_path / "a"), _weights(b)
    assert all(torch.equal(wa[k], wb[k]) for k in wa) and wa["rec_noise"].shape[0] == 2
    run = TrainedRun.from_pretrained(b)
    pairs = run.train_pairs
    assert len(pairs) == 2 and not np.array_equal(pairs[0][1], pairs[1][1])
    assert run(pairs[1][1], seeds=[0, 1]).shape == (2, 32, 32)
    # the same through the command line, then synthesis on the run's own maps uses both
    assert main(["train", "--image", str(files[0][0]), str(files[1][0]), "--label", str(files[0][1]),
                 str(files[1][1]), "--out", str(tmp_path / "c"), "--preset", "tiny", "--quiet"]) == 0
    assert main(["train", "--image", str(files[0][0]), str(files[1][0]), "--label", str(files[0][1]),
                 "--out", str(tmp_path / "d"), "--preset", "tiny", "--quiet"]) == 2  # one label for two images
    assert not (tmp_path / "d").exists()
    assert main(["synthesize", "--runs", str(tmp_path / "c"), "--n", "4", "--out", str(tmp_path / "syn"),
                 "--quiet"]) == 0
    manifest = (tmp_path / "syn" / "manifest.csv").read_text()
    assert "#0" in manifest and "#1" in manifest
    assert main(["sample", str(tmp_path / "c"), "--n", "2", "--out", str(tmp_path / "smp"), "--quiet"]) == 0
    assert len(list((tmp_path / "smp" / "images").iterdir())) == 4


def test_body_fields_train_sample_and_change_the_samples(tmp_path, phantom_files):
    """The fields are part of the model's config: the networks take them in, sampling builds them from any
    map, and they change what is drawn (the same seed and slice give other weights and other samples)."""
    sl = load_slice(*phantom_files)
    plain = train(tmp_path / "plain", sl, tiny(), progress=False)
    fields = train(tmp_path / "fields", sl, tiny(model={"body_fields": True}), progress=False)
    assert fields.model.gens[0].structure[0].in_channels == plain.model.gens[0].structure[0].in_channels + 4
    run = TrainedRun.from_pretrained(tmp_path / "fields")
    assert run.config.model.body_fields
    label4 = fields.label4
    a = run(label4, [1, 2])
    assert a.shape == (2, *label4.shape) and np.isfinite(a).all()
    assert np.array_equal(a, run(label4, [1, 2]))  # deterministic
    assert not np.allclose(a, TrainedRun.from_pretrained(tmp_path / "plain")(label4, [1, 2]))


def test_map_modulation_trains_loads_from_its_checkpoint_and_samples(tmp_path, phantom_files):
    sl = load_slice(*phantom_files)
    t = train(tmp_path / "mod", sl, tiny(model={"modulation": True}), progress=False)
    assert any(bool(m.weight.detach().any()) for g in t.model.gens for m in g.structure.mods)  # it learned
    run = TrainedRun.from_pretrained(tmp_path / "mod")
    assert run.config.model.modulation
    a = run(t.label4, [1, 2])
    assert a.shape == (2, *t.label4.shape) and np.isfinite(a).all() and np.array_equal(a, run(t.label4, [1, 2]))


def test_critic_layout_trains_loads_from_its_checkpoint_and_samples(tmp_path, phantom_files):
    sl = load_slice(*phantom_files)
    t = train(tmp_path / "lay", sl, tiny(model={"critic_layout": True}), progress=False)
    assert t.model.critics[-1].layout is not None and t.model.lung_critics[-1].layout is not None
    run = TrainedRun.from_pretrained(tmp_path / "lay")
    assert run.config.model.critic_layout
    a = run(t.label4, [1, 2])
    assert a.shape == (2, *t.label4.shape) and np.isfinite(a).all()


def test_reconstruction_study_measures_every_scale(tiny_run):
    """studies/reconstruction.py: one row per scale; the coarsest scale's two reconstructions are one."""
    from studies.reconstruction import per_scale

    rows = per_scale(str(tiny_run))
    assert [r["scale"] for r in rows] == list(range(len(TrainedRun.from_pretrained(tiny_run).sizes)))
    assert rows[0]["chain_ssim"] == rows[0]["teacher_ssim"] and rows[0]["chain_rmse"] == rows[0]["teacher_rmse"]
    for r in rows:
        assert -1 <= r["chain_ssim"] <= 1 and 0 <= r["teacher_rmse"] <= 255


def test_critic_augmentation_moves_image_and_map_together():
    """DiffAugment for a conditional critic: a shift or a cutout lands on the image and its map alike,
    the uncovered frame is air, colour leaves the map alone, and gradients reach the fake."""
    from cosingan.gan.diffaug import augment

    torch.manual_seed(0)
    h = w = 32
    label = torch.zeros(2, h, w, dtype=torch.long)
    label[:, 4:28, 6:26] = 1
    label[:, 10:20, 8:14] = 2
    cond = torch.nn.functional.one_hot(label, 4).permute(0, 3, 1, 2).float()
    img = (label.float() / 3 * 2 - 1)[:, None].requires_grad_(True)  # the image encodes the map
    same = (img.detach() + 1) / 2 * 3
    (x,), c = augment([img], cond, ("translation",), air=0)
    assert x.shape == img.shape and c.shape == cond.shape
    assert torch.allclose((x + 1) / 2 * 3, c.argmax(1, keepdim=True).float())  # still aligned
    assert torch.allclose(c.sum(1), torch.ones(2, h, w))  # one-hot everywhere, the frame air
    assert not torch.equal(x, img)  # some shift was drawn
    (x,), c = augment([img], cond, ("cutout",), air=0)
    hole = c.sum(1, keepdim=True) == 0
    assert hole.float().mean() > 0.1 and torch.all(x[hole] == 0) and torch.all(x[~hole] == img[~hole])
    (x, y), c = augment([img, img * 0.5], cond, ("color",), air=0)
    assert torch.equal(c, cond) and not torch.allclose(x, img)
    assert torch.allclose(x - x.mean((1, 2, 3), keepdim=True), 2 * (y - y.mean((1, 2, 3), keepdim=True)), atol=1e-5)
    x.sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
    assert torch.equal(same, (img.detach() + 1) / 2 * 3)  # the inputs untouched


def test_critic_augmentation_trains_and_unknown_names_are_refused(tmp_path, phantom_files):
    sl = load_slice(*phantom_files)
    plain = train(tmp_path / "plain", sl, tiny(), progress=False)
    aug = train(tmp_path / "aug", sl, tiny(train={"d_aug": "color,translation,cutout"}), progress=False)
    run = TrainedRun.from_pretrained(tmp_path / "aug")
    assert run.config.train.d_aug == "color,translation,cutout"
    a = run(aug.label4, [1])
    assert np.isfinite(a).all()
    assert not np.allclose(a, TrainedRun.from_pretrained(tmp_path / "plain")(plain.label4, [1]))
    with pytest.raises(InputError, match="d_aug.*unknown augmentation flips"):
        tiny(train={"d_aug": "flips"})
