"""The README's sample picture: real test slices beside synthetic ones of the same maps, at the same size.

For each generator of one repeat of a finished experiment and each of the first MAPS test slices, a row:
the label map (grey lung, white infection), the real slice, then samples of that map by the generator with
each body anatomy (`synth.anatomy`: generated, transplant, inject; two seeds each for generated and
inject, to show what varies). Samples are drawn as `cosingan quality` draws them; nothing in EXP is
written.

    python -m studies.samples_figure EXP [--repeat 0] [--maps 2] --out docs/samples.png
"""

from __future__ import annotations

from pathlib import Path

from studies.common import open_repeat, test_folder

COLUMNS = ("map", "real", "generated", "generated", "transplant", "inject", "inject")


def main() -> None:
    from PIL import Image

    from cosingan.data.labelmap import body_from_image, label4_to_label
    from cosingan.data.layout import list_slice_folder
    from cosingan.data.pictures import image_to_uint8, label_to_uint8, resize, tile
    from cosingan.data.readers import load_slice
    from cosingan.gan.run import TrainedRun, sample_seed
    from cosingan.synth.anatomy import sample

    def add_args(ap):
        ap.add_argument("--maps", type=int, default=2, help="test slices per generator")
        ap.add_argument("--out", required=True, help="the picture (PNG)")

    rep = open_repeat(__doc__, add_args)
    runs = [q["run"] for q in rep.results["quality"] if q["repeat"] == rep.repeat]
    pairs = list_slice_folder(test_folder(rep))[: rep.args.maps]
    tiles = []
    for run_dir in runs:
        run = TrainedRun.from_pretrained(run_dir)
        for j, (ip, lp) in enumerate(pairs):
            sl = load_slice(ip, lp)
            label4 = run.condition(sl.label, body_from_image(sl.image, sl.label))
            seeds = [sample_seed(0, j, 0), sample_seed(0, j, 1)]
            row = [label_to_uint8(label4_to_label(label4)), image_to_uint8(resize(sl.image, label4.shape))]
            row += list(map(image_to_uint8, sample(run, [label4, label4], seeds, "generated")))
            row += [image_to_uint8(sample(run, [label4], seeds[:1], "transplant")[0])]
            row += list(map(image_to_uint8, sample(run, [label4, label4], seeds, "inject")))
            tiles += row
            print(f"{Path(run_dir).name} x {Path(ip).name}")
    out = Path(rep.args.out)
    Image.fromarray(tile(tiles, len(COLUMNS))).save(out)
    print(f"columns: {', '.join(COLUMNS)} -> {out}")


if __name__ == "__main__":
    main()
