"""The shapes-world prompt grammar: one grammar for captions, for rendering, and for the judge.

Grammar (case-insensitive; commas and a final full stop are optional)::

    prompt     := [lead] body [background] ["."]
    lead       := "a picture of" | "an image of" | "a drawing of" | "a render of"
                | "a photo of" | "there is" | "there are"
    body       := group relation group                     (both groups single: a/an/one)
                | group { "," group } [","] "and" group      (two to four groups)
                | group
    group      := count [size] [colour] shape [region]
    count      := "a" | "an" | "one" | "two" | "three" | "four"
    size       := "small" | "tiny" | "little" | "large" | "big"
    colour     := red | orange | yellow | green | cyan | blue | purple | pink | white | black
    shape      := circle | square | triangle | star | heart | cross | diamond | crescent
                  (plural after two/three/four: circles, …, crosses)
    region     := "on the left" | "on the right" | "at the top" | "at the bottom"
                | "in the center" | "in the centre" | "in the middle"
                | ("in the" | "at the") ("top"|"bottom") ("left"|"right") ["corner"]
    relation   := "above" | "below" | "under" | "beneath" | ["to" | "on"] "the" ("left"|"right") "of"
                | "left of" | "right of"
    background := ("on" | "against" | "with") ("a" | "an") colour "background"

Examples: ``a red circle``, ``a small blue square``, ``a yellow star on a black background``,
``a red circle and a blue square``, ``two green triangles``, ``three stars``, ``one red heart``,
``a red circle on the left``, ``a star at the top``, ``a square in the top left corner``,
``a red circle above a blue square``, ``a heart to the right of a cross``.

Meaning (what the judge checks): a number word asks for exactly that many objects matching the
group; ``a``/``an`` asks for at least one. Extra objects never fail a prompt. An object is never
the colour of its background: such a prompt is refused. A prompt holds at most four objects.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from brushwork.errors import PromptError
from brushwork.world import vocab

LEADS = ("a picture of", "an image of", "a drawing of", "a render of", "a photo of", "there is", "there are")
REGION_PHRASES: dict[str, str] = {
    "on the left": "left", "on the right": "right", "at the top": "top", "at the bottom": "bottom",
    "in the center": "center", "in the centre": "center", "in the middle": "center",
}
for _v in ("top", "bottom"):
    for _h in ("left", "right"):
        for _pre in ("in the", "at the"):
            REGION_PHRASES[f"{_pre} {_v} {_h} corner"] = f"{_v} {_h}"
            REGION_PHRASES[f"{_pre} {_v} {_h}"] = f"{_v} {_h}"
RELATION_PHRASES = {
    "above": "above", "below": "below", "under": "below", "beneath": "below",
    "to the left of": "left of", "on the left of": "left of", "left of": "left of",
    "to the right of": "right of", "on the right of": "right of", "right of": "right of",
}
SINGULAR = {p: s for s, p in vocab.PLURALS.items()}


@dataclass(frozen=True)
class Group:
    """A described kind of object: ``count`` of them (exactly, or at least one for a/an)."""

    shape: str
    count: int = 1
    exact: bool = False
    colour: str | None = None
    size: str | None = None  # "small" | "large" | None (never "medium": the middle is unnamed)
    region: str | None = None


@dataclass(frozen=True)
class Spec:
    """A parsed prompt. ``relation`` relates ``groups[0]`` to ``groups[1]``."""

    groups: tuple[Group, ...]
    relation: str | None = None
    background: str | None = None

    @property
    def n_objects(self) -> int:
        return sum(g.count for g in self.groups)

    def to_dict(self) -> dict:
        return {"groups": [asdict(g) for g in self.groups], "relation": self.relation, "background": self.background}

    @classmethod
    def from_dict(cls, d: dict) -> "Spec":
        return cls(tuple(Group(**g) for g in d["groups"]), d.get("relation"), d.get("background"))


@dataclass
class _Cursor:
    words: list[str]
    pos: int = 0
    raw: list[str] = field(default_factory=list)

    def peek(self, n: int = 1) -> str:
        return " ".join(self.words[self.pos : self.pos + n])

    def take_phrase(self, phrases) -> str | None:
        """Longest phrase from ``phrases`` starting here (consumed), or None."""
        for n in (5, 4, 3, 2, 1):
            cand = self.peek(n)
            if len(cand.split()) == n and cand in phrases:
                self.pos += n
                return cand
        return None

    def done(self) -> bool:
        return self.pos >= len(self.words)

    def fail(self, expected: str) -> PromptError:
        if self.done():
            return PromptError(f"prompt ends too early: expected {expected}")
        return PromptError(f"cannot parse {self.words[self.pos]!r} (word {self.pos + 1}): expected {expected}")


def _tokenize(text: str) -> list[str]:
    text = text.strip().lower()
    if text.endswith("."):
        text = text[:-1]
    return [w for w in re.split(r"\s+|(?=,)|(?<=,)", text) if w]


def _group(cur: _Cursor) -> Group:
    word = cur.peek()
    if word not in vocab.COUNT_WORDS:
        raise cur.fail("a count word (a, an, one, two, three, four)")
    cur.pos += 1
    count = vocab.COUNT_WORDS[word]
    exact = word not in ("a", "an")
    size = colour = None
    if cur.peek() in vocab.SIZE_WORDS:
        size = vocab.SIZE_WORDS[cur.peek()]
        cur.pos += 1
    if cur.peek() in vocab.PALETTE:
        colour = cur.peek()
        cur.pos += 1
    noun = cur.peek()
    if count == 1 and noun in vocab.SHAPES:
        shape = noun
    elif count > 1 and noun in SINGULAR:
        shape = SINGULAR[noun]
    elif count > 1 and noun in vocab.SHAPES:
        raise PromptError(f"'{word} {noun}' needs the plural '{vocab.PLURALS[noun]}' (word {cur.pos + 1})")
    elif count == 1 and noun in SINGULAR:
        raise PromptError(f"'{word} {noun}' needs the singular '{SINGULAR[noun]}' (word {cur.pos + 1})")
    else:
        raise cur.fail("a shape (" + ", ".join(vocab.SHAPES) + ")" if colour or size else
                       "a size, a colour or a shape")
    cur.pos += 1
    region = None
    phrase = cur.take_phrase(REGION_PHRASES)
    if phrase:
        # "on the left of" is a relation, not a region: give the words back.
        if cur.peek() == "of":
            cur.pos -= len(phrase.split())
        else:
            region = REGION_PHRASES[phrase]
    return Group(shape=shape, count=count, exact=exact, colour=colour, size=size, region=region)


def parse(text: str) -> Spec:
    """Parse a shapes-world prompt into a ``Spec``; raise ``PromptError`` naming the first bad word."""
    if not isinstance(text, str) or not text.strip():
        raise PromptError("empty prompt: the shapes world needs at least one object")
    cur = _Cursor(_tokenize(text))
    cur.take_phrase(LEADS)
    groups = [_group(cur)]
    relation = None
    rel = cur.take_phrase(RELATION_PHRASES)
    if rel:
        relation = RELATION_PHRASES[rel]
        groups.append(_group(cur))
    else:
        while not cur.done() and cur.peek() in (",", "and"):
            if cur.peek() == ",":
                cur.pos += 1
                if cur.peek() == "and":
                    cur.pos += 1
                    groups.append(_group(cur))
                    break
                groups.append(_group(cur))
            else:
                cur.pos += 1
                groups.append(_group(cur))
                break
    background = None
    if cur.peek() == ",":
        cur.pos += 1
    if not cur.done() and cur.peek() in ("on", "against", "with") and cur.peek(2).split()[-1] in ("a", "an"):
        cur.pos += 2
        if cur.peek() not in vocab.PALETTE:
            raise cur.fail("a background colour")
        background = cur.peek()
        cur.pos += 1
        if cur.peek() != "background":
            raise cur.fail("'background'")
        cur.pos += 1
    if not cur.done():
        raise cur.fail("the end of the prompt" if background else "'and', a relation, a position or a background")
    spec = Spec(tuple(groups), relation, background)
    validate(spec)
    return spec


def validate(spec: Spec) -> None:
    """Refuse specs the world cannot draw: too many objects, colour = background, plural relations."""
    if not 1 <= len(spec.groups) <= vocab.MAX_OBJECTS:
        raise PromptError(f"a prompt names 1 to {vocab.MAX_OBJECTS} groups of objects")
    if spec.n_objects > vocab.MAX_OBJECTS:
        raise PromptError(f"the prompt asks for {spec.n_objects} objects; at most {vocab.MAX_OBJECTS} fit")
    for g in spec.groups:
        if spec.background and g.colour == spec.background:
            raise PromptError(f"a {g.colour} {g.shape} on a {spec.background} background would be invisible")
    if spec.relation:
        if len(spec.groups) != 2 or any(g.count != 1 for g in spec.groups):
            raise PromptError(f"the relation '{spec.relation}' relates two single objects")
        if any(g.region for g in spec.groups):
            raise PromptError("a prompt cannot combine a relation with an absolute position")


# ---------------------------------------------------------------- formatting (spec -> text)

def group_text(g: Group, *, number_for_one: bool = False, size_word: str | None = None) -> str:
    if g.count == 1 and not g.exact:
        count = "an" if _starts_with_vowel(g, size_word) else "a"
    else:
        count = vocab.NUMBER_NAMES[g.count] if (g.exact or number_for_one) else "a"
    words = [count]
    if g.size:
        words.append(size_word or g.size)
    if g.colour:
        words.append(g.colour)
    words.append(vocab.PLURALS[g.shape] if g.count > 1 else g.shape)
    if g.region:
        words.append(region_text(g.region))
    return " ".join(words)


def _starts_with_vowel(g: Group, size_word: str | None) -> bool:
    first = (size_word or g.size) if g.size else (g.colour or g.shape)
    return first[0] in "aeiou"


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def region_text(region: str) -> str:
    return {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom",
            "center": "in the center"}.get(region, f"in the {region} corner")


def relation_text(relation: str) -> str:
    return {"above": "above", "below": "below", "left of": "to the left of", "right of": "to the right of"}[relation]


def format_spec(spec: Spec) -> str:
    """The canonical prompt for a spec (``parse(format_spec(s)) == s``)."""
    parts = [group_text(g) for g in spec.groups]
    if spec.relation:
        body = f"{parts[0]} {relation_text(spec.relation)} {parts[1]}"
    elif len(parts) == 1:
        body = parts[0]
    else:
        body = ", ".join(parts[:-1]) + " and " + parts[-1]
    if spec.background:
        body += f" on {article(spec.background)} {spec.background} background"
    return body
