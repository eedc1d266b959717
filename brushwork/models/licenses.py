"""Licences as data: an identifier, what it permits, and its use restrictions in plain words.

``check_commercial`` is what the engine calls when ``GenerationParams.commercial`` is true: a
model (or a LoRA stacked on it) whose licence does not clearly permit commercial use is refused,
and the refusal names the licence. A licence brushwork does not know is never assumed permissive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from brushwork.errors import BrushworkError


class LicenseRefused(BrushworkError):
    """A use (commercial) that a model's licence does not permit, or that cannot be confirmed."""

    http_status = 403


# CreativeML Open RAIL-M (SD 1.x, SD 2.x) and CreativeML Open RAIL++-M (SDXL), Attachment A and
# section 5, in plain words. The two lists are the same in substance.
OPENRAIL_RESTRICTIONS = (
    "Do not use it in any way that breaks national, federal, state, local or international law.",
    "Do not use it to exploit or harm minors, or to try to.",
    "Do not generate or spread verifiably false information meant to harm others.",
    "Do not generate or spread personal information that can be used to harm someone.",
    "Do not use it to defame, disparage or harass others.",
    "Do not use it for fully automated decisions that hurt a person's legal rights or create binding obligations.",
    "Do not use it to discriminate against or harm people for their social behaviour or personal characteristics.",
    "Do not use it to exploit the vulnerabilities of a group (age, social, physical or mental traits) to cause harm.",
    "Do not use it to discriminate on legally protected characteristics.",
    "Do not use it to give medical advice or interpret medical results.",
    "Do not use it for administration of justice, law enforcement, immigration or asylum decisions "
    "(for example predicting that someone will commit a crime).",
    "Anyone you pass the model or a derivative to must be bound by these same restrictions, "
    "and gets a copy of the licence.",
)


@dataclass(frozen=True)
class License:
    id: str
    title: str
    commercial: bool | None  # None: cannot be told
    derivatives: bool | None
    restrictions: tuple[str, ...] = ()
    notes: str = ""

    def as_dict(self) -> dict:
        return {
            "id": self.id, "title": self.title, "commercial": self.commercial,
            "derivatives": self.derivatives, "restrictions": list(self.restrictions), "notes": self.notes,
        }


LICENSES: dict[str, License] = {
    lic.id: lic
    for lic in (
        License("creativeml-openrail-m", "CreativeML Open RAIL-M", True, True, OPENRAIL_RESTRICTIONS,
                "Commercial use and derivatives allowed under the use restrictions; outputs are yours, "
                "and you are accountable for their use."),
        License("openrail++", "CreativeML Open RAIL++-M", True, True, OPENRAIL_RESTRICTIONS,
                "SDXL's licence: commercial use and derivatives allowed under the use restrictions."),
        License("openrail", "Open RAIL (generic)", True, True, OPENRAIL_RESTRICTIONS,
                "An OpenRAIL licence: check the model card for its exact use restrictions."),
        License("apache-2.0", "Apache License 2.0", True, True, (),
                "Permissive: keep the licence and NOTICE, state changes."),
        License("mit", "MIT License", True, True, (), "Permissive: keep the copyright notice."),
        License("cc-by-4.0", "Creative Commons Attribution 4.0", True, True, (), "Credit the author."),
        License("cc0-1.0", "Creative Commons Zero 1.0", True, True, (), "Public-domain dedication."),
        License("cc-by-nc-4.0", "Creative Commons Attribution-NonCommercial 4.0", False, True, (),
                "Non-commercial use only; credit the author."),
        License("cc-by-nc-sa-4.0", "Creative Commons Attribution-NonCommercial-ShareAlike 4.0", False, True, (),
                "Non-commercial use only; derivatives under the same licence."),
        License("cc-by-nc-nd-4.0", "Creative Commons Attribution-NonCommercial-NoDerivatives 4.0", False, False, (),
                "Non-commercial use only; no derivatives."),
        License("other", "Other (terms not known to brushwork)", None, None, (),
                "Read the model's own licence text; brushwork cannot tell what it permits."),
        License("unknown", "Unknown (no licence recorded)", None, None, (),
                "No licence was given; treat as all rights reserved."),
    )
}

ALIASES = {
    "creativeml-openrail-m": "creativeml-openrail-m", "openrail-m": "creativeml-openrail-m",
    "creativeml openrail m": "creativeml-openrail-m", "openrail++": "openrail++", "openrail++-m": "openrail++",
    "creativeml-openrail++-m": "openrail++", "openrail": "openrail", "apache-2.0": "apache-2.0",
    "apache2": "apache-2.0", "apache 2.0": "apache-2.0", "mit": "mit", "cc-by-4.0": "cc-by-4.0",
    "cc0-1.0": "cc0-1.0", "cc-by-nc-4.0": "cc-by-nc-4.0", "cc-by-nc-sa-4.0": "cc-by-nc-sa-4.0",
    "cc-by-nc-nd-4.0": "cc-by-nc-nd-4.0", "other": "other", "unknown": "unknown",
}


def normalize_license(raw: object) -> str:
    """A licence identifier from user or model-card text; unrecognised text becomes ``other``."""
    if raw is None:
        return "unknown"
    if isinstance(raw, (list, tuple)):
        raw = raw[0] if raw else None
        if raw is None:
            return "unknown"
    text = str(raw).strip().lower()
    if not text:
        return "unknown"
    return ALIASES.get(text, "other")


def get_license(license_id: str | None) -> License:
    return LICENSES.get(normalize_license(license_id), LICENSES["other"])


def describe(license_id: str | None) -> str:
    """Plain words for ``models show``."""
    lic = get_license(license_id)
    yes_no = {True: "yes", False: "no", None: "cannot be told"}
    lines = [f"{lic.id}: {lic.title}", f"  commercial use: {yes_no[lic.commercial]}",
             f"  derivatives: {yes_no[lic.derivatives]}"]
    if lic.notes:
        lines.append(f"  {lic.notes}")
    if lic.restrictions:
        lines.append("  use restrictions:")
        lines += [f"    - {r}" for r in lic.restrictions]
    return "\n".join(lines)


def check_commercial(name: str, license_id: str | None, *, loras: Iterable[tuple[str, str | None]] = ()) -> None:
    """Raise ``LicenseRefused`` unless the model and every stacked LoRA permit commercial use.

    Args:
        name: display name of the base model.
        license_id: its licence identifier (``None`` counts as ``unknown``).
        loras: ``(name, license_id)`` of each LoRA (or embedding) applied on top.
    """
    for what, item, lid in [("model", name, license_id)] + [("LoRA", n, lic) for n, lic in loras]:
        lic = get_license(lid)
        if lic.commercial is True:
            continue
        if lic.commercial is False:
            reason = "which does not permit commercial use"
        else:
            reason = ("so brushwork cannot confirm that commercial use is allowed; record the licence with "
                      f"'brushwork models add PATH --name {item} --license ID --replace'")
        raise LicenseRefused(f"commercial use refused: {what} {item!r} has licence '{lic.id}' ({lic.title}), {reason}")
