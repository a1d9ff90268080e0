"""Session metadata of an NWB file: the subject, who recorded it where and when, and why.

:class:`NWBMetadata` (with its :class:`NWBSubject`) holds what an NWB file's ``general``
section and ``Subject`` say about a session, in the form nwbinspector and DANDI check
(species as a Latin binomial, age as an ISO 8601 duration, sex as M/F/O/U, DOI links).
:func:`neurocode.data.nwb.write_nwb` writes it; :func:`neurocode.data.nwb.read_nwb` reads a
file's metadata back into ``provenance["nwb"]["metadata"]``, so an NWB file imported into
neurocode and exported again keeps its subject and session.

:data:`ONKEN2016_METADATA` is that of the bundled recording (retina 2 of Onken et al. 2016),
filled in from the paper and the data package; the fields the sources do not document are
placeholders, named as such in its description (see :func:`onken2016_metadata`).

Pure Python: nothing here imports pynwb.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["NWBSubject", "NWBMetadata", "ONKEN2016_METADATA", "onken2016_metadata", "default_metadata",
           "twin_metadata", "load_metadata", "with_overrides", "PLACEHOLDER_START_TIME"]

#: Written as ``session_start_time`` when the acquisition time is not known (NWB requires one);
#: ``notes`` then says it is a placeholder. nwbinspector reports it as a suggestion, not a violation.
PLACEHOLDER_START_TIME = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: ISO 8601 duration (P[nY][nM][nW][nD][T[nH][nM][nS]]), as nwbinspector checks ``Subject.age``.
_DURATION = re.compile(r"P(?!$)(\d+(\.\d+)?Y)?(\d+(\.\d+)?M)?(\d+(\.\d+)?W)?(\d+(\.\d+)?D)?"
                       r"(T(?=\d)(\d+(\.\d+)?H)?(\d+(\.\d+)?M)?(\d+(\.\d+)?S)?)?")
_SEXES = ("M", "F", "O", "U")
#: A Latin binomial or an NCBI taxonomy IRI, as nwbinspector checks ``Subject.species``.
_SPECIES = re.compile(r"([A-Z][a-z]* [a-z]+)|(http://purl\.obolibrary\.org/obo/NCBITaxon_\d+)")
_DOI_STARTS = ("doi:", "https://doi.org/", "http://dx.doi.org/")


def _age_ok(age: str) -> bool:
    if _DURATION.fullmatch(age):
        return True
    if age.count("/") == 1:
        lo, hi = age.split("/")
        return (lo == "" or bool(_DURATION.fullmatch(lo))) and (hi == "" or bool(_DURATION.fullmatch(hi))) \
            and (lo or hi) != ""
    return False


@dataclass(frozen=True)
class NWBSubject:
    """The animal (or tissue) a session recorded from: NWB's ``Subject``.

    Attributes
    ----------
    subject_id : str
        Unique name of the animal within the lab's data (no ``/``).
    species : str
        Latin binomial, e.g. ``"Ambystoma mexicanum"`` (or an NCBI taxonomy URL).
    age : str
        ISO 8601 duration, e.g. ``"P2Y"`` (2 years), ``"P23W"``; a range ``"P1Y/P2Y"``; an
        open range ``"P1Y/"`` (1 year or older); ``"P0D/"`` says only that the age is unknown.
    sex : {"M", "F", "O", "U"}
        Male, female, other, unknown.
    description : str, optional
    strain : str, optional
    """

    subject_id: str
    species: str
    age: str
    sex: str = "U"
    description: str | None = None
    strain: str | None = None

    def __post_init__(self) -> None:
        for name in ("subject_id", "species", "age", "sex"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise ValueError(f"subject.{name} must be non-empty text, got {getattr(self, name)!r}")
        if "/" in self.subject_id:
            raise ValueError(f"subject.subject_id must not contain '/' (DANDI builds paths from it), "
                             f"got {self.subject_id!r}")
        if self.sex not in _SEXES:
            raise ValueError(f"subject.sex must be one of {list(_SEXES)} (male, female, other, unknown), "
                             f"got {self.sex!r}")
        if not _age_ok(self.age):
            raise ValueError(f"subject.age must be an ISO 8601 duration such as 'P2Y' or 'P23W', a range "
                             f"'P1Y/P2Y' or an open range 'P1Y/', got {self.age!r}")
        if not _SPECIES.fullmatch(self.species):
            raise ValueError(f"subject.species must be a Latin binomial such as 'Ambystoma mexicanum' (or an NCBI "
                             f"taxonomy URL), got {self.species!r}")


@dataclass(frozen=True)
class NWBMetadata:
    """What an NWB file says about its session, besides the data.

    Attributes
    ----------
    subject : NWBSubject, optional
        Required by nwbinspector (a CRITICAL finding without it) and by DANDI.
    session_start_time : datetime, optional
        Timezone-aware start of the recording session; None writes
        :data:`PLACEHOLDER_START_TIME` and says so in ``notes``.
    session_description : str, optional
        Default: ``"neurocode recording '<name>' (<dataset>)"``.
    experiment_description : str, optional
    experimenter : tuple of str
        "Last, First" names.
    lab, institution : str, optional
    keywords : tuple of str
    related_publications : tuple of str
        ``"doi:10..."`` or ``"https://doi.org/..."``.
    session_id : str, optional
        No ``/``.
    notes : str, optional
        Added to the file's ``notes``.
    spike_time_resolution : float, optional
        Smallest possible difference between two spike times, s (``1 / sampling rate`` of
        the acquisition system); the ``units`` table's ``resolution``. None: inferred by
        :func:`neurocode.data.nwb.write_nwb` from the recording.
    """

    subject: NWBSubject | None = None
    session_start_time: datetime | None = None
    session_description: str | None = None
    experiment_description: str | None = None
    experimenter: tuple[str, ...] = ()
    lab: str | None = None
    institution: str | None = None
    keywords: tuple[str, ...] = ()
    related_publications: tuple[str, ...] = ()
    session_id: str | None = None
    notes: str | None = None
    spike_time_resolution: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.subject, dict):
            object.__setattr__(self, "subject", NWBSubject(**self.subject))
        if self.subject is not None and not isinstance(self.subject, NWBSubject):
            raise ValueError(f"subject must be an NWBSubject, got {type(self.subject).__name__}")
        for name in ("experimenter", "keywords", "related_publications"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = (value,)
            value = tuple(value)
            if not all(isinstance(v, str) and v.strip() for v in value):
                raise ValueError(f"{name} must be a list of non-empty texts, got {list(value)!r}")
            object.__setattr__(self, name, value)
        for pub in self.related_publications:
            if not pub.startswith(_DOI_STARTS):
                raise ValueError(f"related_publications entry {pub!r} must start with 'doi:' or 'https://doi.org/'")
        t = self.session_start_time
        if isinstance(t, str):
            try:
                t = datetime.fromisoformat(t)
            except ValueError:
                raise ValueError(f"session_start_time must be an ISO 8601 date and time such as "
                                 f"'2015-03-02T10:00:00+01:00', got {t!r}") from None
        if t is not None:
            if not isinstance(t, datetime):
                raise ValueError(f"session_start_time must be a datetime, got {type(t).__name__}")
            if t.tzinfo is None:
                raise ValueError(f"session_start_time {t.isoformat()} has no time zone; give one, e.g. "
                                 f"'{t.isoformat()}+00:00'")
        object.__setattr__(self, "session_start_time", t)
        if self.session_id is not None and "/" in self.session_id:
            raise ValueError(f"session_id must not contain '/', got {self.session_id!r}")
        r = self.spike_time_resolution
        if r is not None and (isinstance(r, bool) or not isinstance(r, (int, float)) or not (r > 0 and math.isfinite(r))):
            raise ValueError(f"spike_time_resolution must be a positive number of seconds, got {r!r}")

    def replace(self, **changes: Any) -> "NWBMetadata":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """JSON-ready: the datetime as ISO 8601 text, tuples as lists."""
        d = dataclasses.asdict(self)
        if self.session_start_time is not None:
            d["session_start_time"] = self.session_start_time.isoformat()
        for name in ("experimenter", "keywords", "related_publications"):
            d[name] = list(d[name])
        return d

    @classmethod
    def from_dict(cls, d: dict, source: str = "metadata") -> "NWBMetadata":
        """Inverse of :meth:`to_dict`; an unknown or malformed field is a ValueError naming ``source`` and it."""
        if not isinstance(d, dict):
            raise ValueError(f"{source}: expected a JSON object of NWB metadata fields, got {type(d).__name__}")
        _check_fields(d, cls, "NWB metadata", source)
        subject = d.get("subject")
        if subject is not None:
            if not isinstance(subject, dict):
                raise ValueError(f"{source}: field 'subject' must be an object, got {type(subject).__name__}")
            _check_fields(subject, NWBSubject, "subject", source)
            missing = sorted(k for k in ("subject_id", "species", "age") if k not in subject)
            if missing:
                raise ValueError(f"{source}: subject lacks {missing} (required with a subject)")
        try:
            return cls(**d)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{source}: {e}") from None


def _check_fields(d: dict, cls, what: str, source: str) -> None:
    """ValueError naming ``source`` and the keys of ``d`` that are not fields of dataclass ``cls``."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"{source}: unknown {what} field(s) {unknown}; known: {sorted(known)}")


def load_metadata(path: str | os.PathLike) -> NWBMetadata:
    """Read :class:`NWBMetadata` from a JSON file (the fields of :meth:`NWBMetadata.to_dict`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such metadata file (--metadata)")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a JSON file ({type(e).__name__}: {' '.join(str(e).split())})") from None
    return NWBMetadata.from_dict(d, source=str(path))


ONKEN2016_PAPER_DOI = "10.1371/journal.pcbi.1005189"
#: Spike files of the package that hold retina 2, the bundled recording's retina.
_RETINA2_FILES = ("NaturalImages2.mat", "Movie1Exp2.mat", "Movie2Exp2.mat")


def onken2016_metadata(subject_id: str = "onken2016-retina2") -> NWBMetadata:
    """Session metadata of a retina of Onken et al. (2016), from the paper and its Dryad package.

    Documented (paper, affiliations, data package): the species (axolotl salamander,
    *Ambystoma mexicanum*), an isolated dark-adapted retina recorded on a multielectrode
    array in the lab of Tim Gollisch, Department of Ophthalmology, University Medical Center
    Göttingen; the experimenters listed are the paper's authors from that lab (J. K. Liu,
    T. Gollisch); the spike times are stored as integer milliseconds (resolution 1 ms).

    **Placeholders a lab must replace** (not documented in the paper or the package): the
    session start time (None: the 1970-01-01 placeholder, stated in ``notes``), the age
    (``"P0D/"``: unknown) and the sex (``"U"``: unknown).
    """
    return NWBMetadata(
        subject=NWBSubject(
            subject_id=subject_id,
            species="Ambystoma mexicanum",
            age="P0D/",
            sex="U",
            description="Axolotl salamander whose isolated, dark-adapted retina was recorded by Onken et al. "
                        "(2016). Age and sex are not documented in the paper or the data package: age 'P0D/' "
                        "(unknown) and sex 'U' are placeholders.",
        ),
        session_start_time=None,
        experiment_description=(
            "Retinal ganglion cells of an isolated axolotl salamander retina recorded extracellularly on a "
            "multielectrode array, responding to flashed natural images (60 images, 30 trials each, 300-ms "
            "responses) and natural movies (Onken et al. 2016, PLoS Comput Biol 12(11): e1005189; data: Dryad "
            "doi:10.5061/dryad.4ch10, CC0). The acquisition date is not documented."),
        experimenter=("Liu, Jian K.", "Gollisch, Tim"),
        lab="Gollisch lab, Department of Ophthalmology",
        institution="University Medical Center Göttingen",
        keywords=("retina", "retinal ganglion cells", "salamander", "axolotl", "multielectrode array",
                  "natural images", "spike trains"),
        related_publications=(f"doi:{ONKEN2016_PAPER_DOI}", "doi:10.5061/dryad.4ch10"),
        spike_time_resolution=1e-3,
    )


#: The bundled recording's metadata (retina 2 of Onken et al. 2016); see :func:`onken2016_metadata`.
ONKEN2016_METADATA = onken2016_metadata()


def default_metadata(provenance: dict) -> NWBMetadata | None:
    """The metadata a recording's provenance implies, or None when it implies none.

    In order: the metadata of the NWB file it was read from (``provenance["nwb"]["metadata"]``);
    for a digital twin (``digital_twin_of``), :func:`twin_metadata` of its source recording's;
    for a recording of Onken et al. (2016) (``paper_doi``), :func:`onken2016_metadata` (retina 2
    for the bundled files, else a subject named after the spike file).
    """
    if not isinstance(provenance, dict):
        return None
    stored = (provenance.get("nwb") or {}).get("metadata") if isinstance(provenance.get("nwb"), dict) else None
    if isinstance(stored, dict):
        try:
            return NWBMetadata.from_dict(stored, source="provenance['nwb']['metadata']")
        except ValueError:
            pass  # a file whose own metadata fails the checks: fall through to what else is known
    twin_of = provenance.get("digital_twin_of")
    if twin_of is not None:
        base = default_metadata(provenance.get("recording_provenance") or {})
        return twin_metadata(base, str(twin_of), str(provenance.get("model", "?")))
    if provenance.get("paper_doi") == ONKEN2016_PAPER_DOI:
        files = [Path(k).name for k in provenance.get("source_files_sha256") or {} if "Spikes" in k]
        if not files or any(f in _RETINA2_FILES for f in files):
            return ONKEN2016_METADATA
        return onken2016_metadata(f"onken2016-{Path(files[0]).stem}")
    return None


def twin_metadata(base: NWBMetadata | None, run_dir: str, model: str) -> NWBMetadata:
    """Metadata of a digital twin: in-silico trials of a model fitted to a recording with metadata ``base``.

    The subject stays the animal whose retina was modelled (its description says the
    responses are simulated); the session is the simulation, started now; the spike-time
    resolution is left to the twin's time step.
    """
    base = base or NWBMetadata()
    subject = base.subject
    if subject is not None:
        subject = dataclasses.replace(subject, description=(
            f"{subject.description or ''} The responses in this file are not recorded: they are sampled from a "
            f"neurocode {model} model fitted to this subject's recording (a digital twin).").strip())
    described = (f"In-silico trials sampled from the neurocode {model} model of run {Path(run_dir).name} "
                 "(a digital twin of the recorded retina).")
    return dataclasses.replace(
        base,
        subject=subject,
        session_start_time=datetime.now(timezone.utc).replace(microsecond=0),
        session_description=described,
        experiment_description=f"{described} {base.experiment_description or ''}".strip(),
        keywords=tuple(dict.fromkeys(base.keywords + ("digital twin", "in silico", "neurocode"))),
        notes=f"Simulated by neurocode from the run folder {run_dir}.",
        spike_time_resolution=None,
    )


#: Keywords of :func:`with_overrides` that set a field of the subject: keyword -> NWBSubject field.
SUBJECT_KEYWORDS = {"subject_id": "subject_id", "species": "species", "age": "age", "sex": "sex", "strain": "strain",
                    "subject_description": "description"}


def with_overrides(base: NWBMetadata | None, **changes: Any) -> NWBMetadata:
    """``base`` (or empty metadata) with the given fields replaced; None values leave a field as it is.

    Subject fields are given as ``subject_id``, ``species``, ``age``, ``sex``,
    ``subject_description``, ``strain``; a new subject needs at least ``subject_id``,
    ``species`` and ``age``. Any other keyword is an :class:`NWBMetadata` field.
    """
    md = base or NWBMetadata()
    sub = {SUBJECT_KEYWORDS[k]: v for k, v in changes.items() if k in SUBJECT_KEYWORDS and v is not None}
    general = {k: v for k, v in changes.items() if k not in SUBJECT_KEYWORDS and v is not None}
    known = {f.name for f in dataclasses.fields(NWBMetadata)} - {"subject"}
    unknown = sorted(set(general) - known)
    if unknown:
        raise ValueError(f"unknown NWB metadata field(s) {unknown}; known: {sorted(known | set(SUBJECT_KEYWORDS))}")
    if sub:
        if md.subject is not None:
            subject = dataclasses.replace(md.subject, **sub)
        else:
            missing = [k for k in ("subject_id", "species", "age") if k not in sub]
            if missing:
                raise ValueError("a subject needs " + ", ".join(f"--{k.replace('_', '-')}" for k in missing) +
                                 " (or a --metadata file with a subject)")
            subject = NWBSubject(**sub)
        general["subject"] = subject
    return dataclasses.replace(md, **general) if general else md
