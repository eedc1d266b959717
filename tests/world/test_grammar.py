import pytest

from brushwork.errors import PromptError
from brushwork.world.grammar import Group, Spec, format_spec, parse


@pytest.mark.parametrize("text, spec", [
    ("a red circle", Spec((Group("circle", colour="red"),))),
    ("a small blue square", Spec((Group("square", colour="blue", size="small"),))),
    ("a yellow star on a black background", Spec((Group("star", colour="yellow"),), None, "black")),
    ("a red circle and a blue square", Spec((Group("circle", colour="red"), Group("square", colour="blue")))),
    ("two green triangles", Spec((Group("triangle", 2, True, "green"),))),
    ("three stars", Spec((Group("star", 3, True),))),
    ("one red heart", Spec((Group("heart", 1, True, "red"),))),
    ("a red circle on the left", Spec((Group("circle", colour="red", region="left"),))),
    ("a star at the top", Spec((Group("star", region="top"),))),
    ("a square in the top left corner", Spec((Group("square", region="top left"),))),
    ("a cross in the center", Spec((Group("cross", region="center"),))),
    ("a red circle above a blue square", Spec((Group("circle", colour="red"), Group("square", colour="blue")), "above")),
    ("a heart below a cross", Spec((Group("heart"), Group("cross")), "below")),
    ("a heart to the left of a cross", Spec((Group("heart"), Group("cross")), "left of")),
    ("a heart to the right of a cross", Spec((Group("heart"), Group("cross")), "right of")),
    ("A picture of a big cross in the middle.", Spec((Group("cross", size="large", region="center"),))),
    ("a circle, a star and two hearts on a white background",
     Spec((Group("circle"), Group("star"), Group("heart", 2, True)), None, "white")),
])
def test_parses(text, spec):
    assert parse(text) == spec
    assert parse(format_spec(spec)) == spec


@pytest.mark.parametrize("text, message", [
    ("a blue elephant", "cannot parse 'elephant' (word 3): expected a shape"),
    ("two star", "'two star' needs the plural 'stars'"),
    ("a stars", "needs the singular 'star'"),
    ("red circle", "cannot parse 'red' (word 1): expected a count word"),
    ("a red circle on a red background", "would be invisible"),
    ("a circle beside a square", "cannot parse 'beside' (word 3)"),
    ("three stars and two hearts", "asks for 5 objects; at most 4"),
    ("two stars above a heart", "relates two single objects"),
    ("a circle on a plaid background", "expected a background colour"),
    ("", "empty prompt"),
    ("a red circle and", "prompt ends too early"),
])
def test_refuses_with_message(text, message):
    with pytest.raises(PromptError) as err:
        parse(text)
    assert message in str(err.value)
    assert "\n" not in str(err.value)
