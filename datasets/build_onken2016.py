#!/usr/bin/env python
"""Build the bundled prepared recording ``datasets/onken2016_retina2.h5``.

Recipe (from the repository root)::

    python datasets/build_onken2016.py --source ../shared/data/onken2016 \
        --out datasets/onken2016_retina2.h5 --overwrite

(``--overwrite`` replaces the existing file; without it an existing ``--out`` is refused.)

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
from pathlib import Path

# Allow running from a checkout without installing the package (installed, this file is
# neurocode/datasets/build_onken2016.py and the package is importable already).
if (Path(__file__).resolve().parents[1] / "neurocode").is_dir():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neurocode._io import atomic_path  # noqa: E402
from neurocode.data.onken2016 import load_onken2016, sha256_file  # noqa: E402

#: SHA-256 of every package file this recipe reads (from the package's SHA256SUMS).
EXPECTED_SHA256 = {
    "NeuralData/Spikes/NaturalImages2.mat": "0b857caf5b0c7f33c45585251c03dcaddeb3922a4afa0022ce1ab98a002168bc",
    "NeuralData/Spikes/Movie1Exp2.mat": "20ee3ffa89596a6272adda50847ff874d314313c65f051b794f8729e144b86af",
    "NeuralData/Spikes/Movie2Exp2.mat": "9432941af5b8cd42bff440ad2f872e27f980abe8d3e2ab7b8941a7456115ef05",
    "NeuralData/ReceptiveFields/NaturalImages2.mat": "2035ee424bf487fc41609985e53fcf4c1ac66bb069cc80e96fe8530d804c91f7",
    "NeuralData/ReceptiveFields/Movie1Exp2.mat": "94573987120dbe4bcede1993e0cc2a91c7fdb38a42037e8ec7dfee53bf403d0a",
    "NeuralData/ReceptiveFields/Movie2Exp2.mat": "35ecad8d3f4d49189e3998d2b7918dcf514fa62298ed37e5ac45f1aa663542b1",
    "Stimuli/NaturalImages/image001.raw": "5c0b208cc634b76f2818f389c3f91be8668148c8e0a017496d4c0aa739e7d001",
    "Stimuli/NaturalImages/image002.raw": "0e629a9afc98bc23f7e382214cf160aef8478743e73be7f11085975217a0b258",
    "Stimuli/NaturalImages/image003.raw": "d222c3a757f64ab9b14557965644ff2ed48091de1059bc3cf61705b2decfe369",
    "Stimuli/NaturalImages/image004.raw": "e37904fa53dfcb01f771e2b3af14eee6a6d148134a4ae66f85b2753e2705bdec",
    "Stimuli/NaturalImages/image005.raw": "9ff46dd7fb65c02e36f6f9e703658cf765466672d123bb54097ae53d1e2a31b7",
    "Stimuli/NaturalImages/image006.raw": "e4e58527f4f5227d6075f72cbb84589e27091bd0c80ad256e9962e8d1624cee9",
    "Stimuli/NaturalImages/image007.raw": "22a514c70d0fb41529fd538daa2a39f2a4b0a81b74c9ecc0c9da820b95c1edde",
    "Stimuli/NaturalImages/image008.raw": "61f417cef60514256201f08bb9d29e84fd6815fbde0cba9bb240450339c49eb0",
    "Stimuli/NaturalImages/image009.raw": "7aef2032497c3a273a5c1fbc4b369d415a9f00822ccf9192b1558f9ae43e8af0",
    "Stimuli/NaturalImages/image010.raw": "74713be8969fd04ddf3ab4e1018ecca104bdd5ee176c1111df95b4d4b2874fd7",
    "Stimuli/NaturalImages/image011.raw": "c98c9b6ed74bd7de3b5aaf17a4fbf80e7907646c6199a705e4836f62fa55efd5",
    "Stimuli/NaturalImages/image012.raw": "c615dd2e9ec48e3fb6bef2aa0b99008664337d461e87ce9c5300df0309978362",
    "Stimuli/NaturalImages/image013.raw": "8293f469ed09ebbeb3709986489b777477c5a47b66188230b1a4f16ff1e52c0c",
    "Stimuli/NaturalImages/image014.raw": "339d1f1ea742d808829e01740c12ced09d92edd45aa88a2451796c4bee3daf3a",
    "Stimuli/NaturalImages/image015.raw": "966520436849e63f88cd128249d8fb66e758c8979200e2057a158700aa6ad2cc",
    "Stimuli/NaturalImages/image016.raw": "ee9ee31352eda26978ceccfb26b945383c8a38aab306179f45ed241abd99e0a5",
    "Stimuli/NaturalImages/image017.raw": "ed605046fabf2fcbeed0c3b3b8fdd4a1686823db4cc8bdfec3c5ba11339e9d66",
    "Stimuli/NaturalImages/image018.raw": "471db9da48a62b44126063ca5193c09a482db2cf8024a54c4888ee1cdb5ce390",
    "Stimuli/NaturalImages/image019.raw": "303d88398e038fee870b63027440b420778e5dcbee12782a8b6c65b27da0cd35",
    "Stimuli/NaturalImages/image020.raw": "bd0300796df506b425d90b1bc4424d5d21e546f2634fe2c01c9891ef34dd09aa",
    "Stimuli/NaturalImages/image021.raw": "f68200e62f9560ed2d29bbf6409deffa9fc47368991df51f739eaf2bd6ee674b",
    "Stimuli/NaturalImages/image022.raw": "6bd8b918c4090312e7c8ce2fb06a5eae74933b0b4a737f078e953cf7410fd0b7",
    "Stimuli/NaturalImages/image023.raw": "b408e842ce7d4471441aa96ffc1439c4d14a0fc83bc15b395b83255e8e6d889d",
    "Stimuli/NaturalImages/image024.raw": "7d4fbe31f8aeda51b99f92a8fb5a403b934f7ae92b75b19af552aceea38e33f9",
    "Stimuli/NaturalImages/image025.raw": "b905a5fabcb440b7442f6160a8b2e1e6f53057010bb6658533ba8a183bc286f8",
    "Stimuli/NaturalImages/image026.raw": "19fc835a042ece9da12d12752a717e6133baf2ce6c7c4975cc031318f92d5885",
    "Stimuli/NaturalImages/image027.raw": "09acb6ed735d6086ac4c1dde5762485b125c4763c47a577f3b90d2e9bd5534da",
    "Stimuli/NaturalImages/image028.raw": "cc3ad04b23be3798601a67fdabb8893069a7425446d5dc32b0a8cd727b383f80",
    "Stimuli/NaturalImages/image029.raw": "7ade0e7c34ff2e1ab27ecbd2169c1792df30e25563c1110167ebb895602515a9",
    "Stimuli/NaturalImages/image030.raw": "c736379a35fb79b019a33bd5cd8ba0fe06252e5d91069e61d8c723eba5898c7c",
    "Stimuli/NaturalImages/image031.raw": "f509e7f65c8b62f18d6f50f7865444b275de330d6d564de246f9a060fa7d7a38",
    "Stimuli/NaturalImages/image032.raw": "050607f2bff553f16cc4c580e528dca54a7ac442097e0de218feb6c57699f4fb",
    "Stimuli/NaturalImages/image033.raw": "7e68b9516f435e47047b4640ba74233c04ad351bc1be6832ff59c8e5e157a4bc",
    "Stimuli/NaturalImages/image034.raw": "8193f2ca08fbdd65bd61637242fb97ba917c34536261b5d52b9ac0292fe7fa65",
    "Stimuli/NaturalImages/image035.raw": "d5787e42ed0d5ed62ddc582d491addee7431d8b052c02910906dae38d2fedcbc",
    "Stimuli/NaturalImages/image036.raw": "d28ee0bd90c6f86ac00ed5e4a70834344689e0caf5d6a48c5b77bd13a732b829",
    "Stimuli/NaturalImages/image037.raw": "ff084126508d10e968d2f0c7921a618a1f5e2aa0d68743d23fa1b8455787bf3f",
    "Stimuli/NaturalImages/image038.raw": "849529acabc50fbd98f91dc2a3ff863ed44c4dc09626766d455b08154d0672e0",
    "Stimuli/NaturalImages/image039.raw": "8c3e4c971717f0299e986bc217b39d4123beac4c6fdc7eedd3d112f4605187aa",
    "Stimuli/NaturalImages/image040.raw": "030ac69570e4420496b480b549ab6e028800a557c4060d2148b6c7f8724f5f64",
    "Stimuli/NaturalImages/image041.raw": "4cc1d375b3fcde28213a9db679c9dea97f6a518512312f74d902e4a51c6ec1f6",
    "Stimuli/NaturalImages/image042.raw": "5e1afeb029fea20ff74adaddf776b0487202cbcee8dc14b2480f491dc1f1af54",
    "Stimuli/NaturalImages/image043.raw": "8325f6a3b58ddfe0bde9ae295d294666c252ac2b4011ab2b2f0515314dfebc4e",
    "Stimuli/NaturalImages/image044.raw": "46575c3faa25e74b7ce1440341e2b6405e776ab03e79ef56c3a6cb972e8634fd",
    "Stimuli/NaturalImages/image045.raw": "9acb5308ed38df5285454aa957bd07fafe9b97f4b74d904a303e34f23511d109",
    "Stimuli/NaturalImages/image046.raw": "dda7264bc9c9cbaded720054890b75d211e2c2dda0ab1506fe5216d7915a06ce",
    "Stimuli/NaturalImages/image047.raw": "094d37d4e0042cac300078577b6fa437b1d083796224ab9daeecb0925715418b",
    "Stimuli/NaturalImages/image048.raw": "c1bdbf97d8ac31f0cb8fe777f25d8f0b230aa75eb11e5eeb6b3a72118b9863fc",
    "Stimuli/NaturalImages/image049.raw": "d60975d07b214a8d79790e7bdd0bd61e3d7d871a3bb21a6be6a6aac5c53da5e1",
    "Stimuli/NaturalImages/image050.raw": "89420523b64e971f3dae2080e3fba51fa0da876ef56bacebb913e77ff1e6a58c",
    "Stimuli/NaturalImages/image051.raw": "c3a8ca2410d1d9debf950cbf4c4deb4d73889d8a86d962ccb6feaea2cf0a4797",
    "Stimuli/NaturalImages/image052.raw": "90fb86c3fe579ed3ba53cda6e3884aa0ea799d17bd88575279d62e08766d708d",
    "Stimuli/NaturalImages/image053.raw": "8b74a04f48c8a5ef5e4315295906e4597ee6f4128b02574bcb7614b9cb510954",
    "Stimuli/NaturalImages/image054.raw": "0c5706896a0c7270bdbe2a8087bc6048d24cf121b66bdb05940b5692b2e63600",
    "Stimuli/NaturalImages/image055.raw": "b46219ccdbb2e993391c8e81485d5f264f9786c7285ed91d6c89b06d579b4d1e",
    "Stimuli/NaturalImages/image056.raw": "48084bb4f18de9e7398754cfaa1582a360664f04a9f9a9a9a21a8b8f491635b1",
    "Stimuli/NaturalImages/image057.raw": "42c168e9f9a25dd38d6606b36520c03d5f2bb9764a78f903fe93a864f2725bb0",
    "Stimuli/NaturalImages/image058.raw": "9b3a89f0008ce7cceb3e62ce5af239135137f2b1fa25940775d63c9043fec527",
    "Stimuli/NaturalImages/image059.raw": "e0d9827989e5e6d9e2f2dff798d1f0fcc74545ce8d724a738619c17224c359b8",
    "Stimuli/NaturalImages/image060.raw": "abc0e144b40fba0367ac323c5895b14a8e3290af4fbd160fdbddcbeb1750ab55",
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


def build(source: Path, out: Path, *, overwrite: bool = False) -> Path:
    """Verify the sources, load the three recordings, write ``out`` atomically.

    An existing ``out`` is refused (FileExistsError, before anything is read) unless
    ``overwrite`` is True; it is then replaced in one step, never left half-written. The file
    gets the permissions of the umask. A failed write (disk full, read-only folder) raises
    :class:`neurocode._io.WriteError` naming ``out`` and leaves no temporary file.
    """
    source = Path(source)
    out = Path(out)
    if str(out) in ("", "."):
        raise ValueError("--out must name a file")
    if not overwrite and os.path.lexists(out):
        raise FileExistsError(f"{out}: file exists; pass --overwrite (overwrite=True) to replace it")
    if out.is_dir():
        raise IsADirectoryError(f"{out}: is a folder; --out must name a file")
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
    # Build into a temporary file next to `out`, then move into place: never a half-written file
    # (and, without overwrite, never onto a file that appeared meanwhile).
    with atomic_path(out, overwrite=overwrite) as tmp:
        tmp.unlink()  # Recording.save starts a new file here
        for rec in recs:
            rec.save(tmp, rec.name)
        # the temporary file is this process's alone: the lock file Recording.save kept beside it goes too
        (tmp.parent / f".{tmp.name}.lock").unlink(missing_ok=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", type=Path, required=True, help="root of the Onken 2016 package")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "onken2016_retina2.h5")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    args = p.parse_args(argv)
    out = build(args.source, args.out, overwrite=args.overwrite)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
