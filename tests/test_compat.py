"""A run trained by an older cosingan (before the layer split) loads and samples as it did (bit-identically on
one machine; to float rounding across CPUs)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from cosingan.cli import main
from cosingan.data.phantom import chest_phantom
from cosingan.data.readers import read_image
from cosingan.gan import TrainedRun, sample_seed

FIX = Path(__file__).parent / "fixtures"


def test_old_run_loads_with_its_metadata():
    run = TrainedRun.from_pretrained(FIX / "run_before_layout")
    assert run.kind == "png" and run.config.preset == "tiny"
    assert np.allclose(run.spacing, [1.2, 1.2])  # 0.8 mm at 48 px, trained at 32 px and run.sizes[-1] == (32, 32)
    assert run.train_label4.shape == run.train_image.shape == (32, 32)


# The fixtures were drawn on one CPU; another CPU's kernels may round the last float bits differently
# (measured: up to 1.8e-7 on an AMD EPYC), far below one grey level (2/255 = 0.008); another noise seed
# moves the samples by 0.3.
ACROSS_CPUS = 1e-5


def test_old_run_samples_as_it_did():
    run = TrainedRun.from_pretrained(FIX / "run_before_layout")
    seeds = [sample_seed(5, 0, k) for k in range(3)]
    own = run(run.train_label4, seeds)
    assert np.array_equal(own, run(run.train_label4, seeds))  # same machine, same seed: same bytes
    np.testing.assert_allclose(own, np.load(FIX / "samples_own_map.npy"), rtol=0, atol=ACROSS_CPUS)
    label4 = run.condition(chest_phantom(64, seed=1)[1])
    assert np.array_equal(label4, np.load(FIX / "other_map_label4.npy"))
    other = run(label4, [sample_seed(5, 1, k) for k in range(3)])
    np.testing.assert_allclose(other, np.load(FIX / "samples_other_map.npy"), rtol=0, atol=ACROSS_CPUS)


def test_old_run_samples_through_the_cli(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FIX / "run_before_layout", run)
    assert main(["sample", str(run), "--n", "2", "--out", str(tmp_path / "s"), "--quiet"]) == 0
    first = read_image(tmp_path / "s" / "images" / "train_0000.png")[0]
    assert first.shape == (32, 32)


def test_old_run_is_reused_with_the_defaults_of_settings_added_since(tmp_path):
    """A run trained before a setting existed counts as trained with its default, as it loads and samples: a
    newer cosingan resumes an experiment over it instead of refusing it; other settings are still refused."""
    import dataclasses

    import pytest

    from cosingan.errors import InputError
    from cosingan.gan.checkpoint import load_checkpoint, run_status
    from cosingan.gan.config import config_to_dict

    run = tmp_path / "run"
    shutil.copytree(FIX / "run_before_layout", run)
    assert "d_aug" not in load_checkpoint(run)["config"]["train"]  # the fixture predates the setting
    cfg = TrainedRun.from_pretrained(run).config
    assert run_status(run, config_to_dict(cfg)) == "done"
    with pytest.raises(InputError, match=r"other settings \(seed\)"):
        run_status(run, config_to_dict(dataclasses.replace(cfg, seed=1)))
    newer = config_to_dict(cfg)
    newer["train"]["d_aug"] = "cutout"
    with pytest.raises(InputError, match=r"other settings \(train\.d_aug\)"):
        run_status(run, newer)
