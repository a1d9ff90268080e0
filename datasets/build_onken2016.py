#!/usr/bin/env python
"""Build the bundled prepared recording ``datasets/onken2016_retina2.h5``.

Recipe (from the repository root)::

    python datasets/build_onken2016.py --source ../shared/data/onken2016 \
        --out datasets/onken2016_retina2.h5

``--source`` is the root of the Onken et al. (2016) package (Dryad doi:10.5061/dryad.4ch10,
https://doi.org/10.5061/dryad.4ch10, CC0), i.e. the folder holding ``NeuralData/`` and
``Stimuli/``. Every file read is checked against the SHA-256 sums below (and against the
``SHA256SUMS`` file in ``--source`` if present); a mismatch stops the build naming the file.

The output holds three recordings of retina 2 (49 cells, 30 trials):

* ``natural_images``: the 60 flashed natural images (uint8 256x256, ``stimuli[i]`` =
  ``imageNNN.raw`` with NNN = i + 1), window 0-0.3 s, 181,542 spikes;
* ``movie1``, ``movie2``: spike trains of ``Movie1Exp2``/``Movie2Exp2``, window 0-18 s, no
  frames (the movie presentation timing is undocumented and unrecoverable).

The file is deterministic (no timestamps, sorted JSON, fixed compression), so a rebuild gives
identical content.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

# Allow running from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neurocode.data.onken2016 import load_onken2016, sha256_file  # noqa: E402

#: SHA-256 of every package file this recipe reads (from the package's SHA256SUMS).
EXPECTED_SHA256 = {
    "NeuralData/Spikes/NaturalImages2.mat": "0b857caf5b0c7f33c45585251c03dcaddeb3922a4afa0022ce1ab98a002168bc",
    "NeuralData/Spikes/Movie1Exp2.mat": "20ee3ffa89596a6272adda50847ff874d314313c65f051b794f8729e144b86af",
    "NeuralData/Spikes/Movie2Exp2.mat": "9432941af5b8cd42bff440ad2f872e27f980abe8d3e2ab7b8941a7456115ef05",
    "NeuralData/ReceptiveFields/NaturalImages2.mat": "2035ee424bf487fc41609985e53fcf4c1ac66bb069cc80e96fe8530d804c91f7",
    "NeuralData/ReceptiveFields/Movie1Exp2.mat": "94573987120dbe4bcede1993e0cc2a91c7fdb38a42037e8ec7dfee53bf403d0a",
    "NeuralData/ReceptiveFields/Movie2Exp2.mat": "35ecad8d3f4d49189e3998d2b7918dcf514fa62298ed37e5ac45f1aa663542b1",
}

#: (group name, spike file stem, frames folder or None)
RECORDINGS = [
    ("natural_images", "NaturalImages2", "Stimuli/NaturalImages"),
    ("movie1", "Movie1Exp2", None),
    ("movie2", "Movie2Exp2", None),
]

EXPECTED_FACTS = {
    "natural_images": dict(shape=(60, 49, 30), window=(0.0, 0.3), n_spikes=181542),
    "movie1": dict(shape=(1, 49, 30), window=(0.0, 18.0)),
    "movie2": dict(shape=(1, 49, 30), window=(0.0, 18.0)),
}


class ChecksumError(RuntimeError):
    """A source file does not match its recorded SHA-256."""


def read_sha256sums(source: Path) -> dict[str, str]:
    """Parse ``<source>/SHA256SUMS`` (``<hex>  ./relative/path`` lines); {} if absent."""
    sums_file = source / "SHA256SUMS"
    if not sums_file.is_file():
        return {}
    sums = {}
    for line in sums_file.read_text().splitlines():
        if line.strip():
            digest, rel = line.split(maxsplit=1)
            sums[rel.strip().removeprefix("./")] = digest.lower()
    return sums


def verify(source: Path, rel: str, sums: dict[str, str]) -> None:
    """Check one file against the built-in table and SHA256SUMS; raise naming the file."""
    path = source / rel
    if not path.is_file():
        raise FileNotFoundError(f"{path}: source file missing (download the package from doi:10.5061/dryad.4ch10)")
    expected = EXPECTED_SHA256.get(rel) or sums.get(rel)
    if expected is None:
        raise ChecksumError(f"{path}: no recorded SHA-256 for {rel} (not in the recipe table nor SHA256SUMS)")
    actual = sha256_file(path)
    for label, want in (("recipe", EXPECTED_SHA256.get(rel)), ("SHA256SUMS", sums.get(rel))):
        if want is not None and actual != want:
            raise ChecksumError(f"{path}: SHA-256 mismatch ({label} expects {want}, file has {actual})")


def build(source: Path, out: Path) -> Path:
    """Verify the sources, load the three recordings, write ``out`` atomically."""
    source = Path(source)
    sums = read_sha256sums(source)
    recs = []
    for group, stem, frames in RECORDINGS:
        spike_rel = f"NeuralData/Spikes/{stem}.mat"
        rf_rel = f"NeuralData/ReceptiveFields/{stem}.mat"
        to_check = [spike_rel, rf_rel]
        if frames is not None:
            to_check += [f"{frames}/image{i:03d}.raw" for i in range(1, 61)]
        for rel in to_check:
            verify(source, rel, sums)
        rec = load_onken2016(
            source / spike_rel,
            stimulus_dir=None if frames is None else source / frames,
            receptive_field_file=source / rf_rel,
            name=group,
        )
        facts = EXPECTED_FACTS[group]
        got = dict(shape=rec.shape, window=rec.window, n_spikes=rec.n_spikes)
        for key, want in facts.items():
            if got[key] != want:
                raise RuntimeError(f"{source / spike_rel}: {key} is {got[key]}, expected {want}")
        recs.append(rec)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Build into a temporary file next to `out`, then move into place: never a half-written file.
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".build", dir=out.parent)
    os.close(fd)
    os.remove(tmp)
    try:
        for rec in recs:
            rec.save(tmp, rec.name)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", type=Path, required=True, help="root of the Onken 2016 package")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "onken2016_retina2.h5")
    args = p.parse_args(argv)
    out = build(args.source, args.out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
