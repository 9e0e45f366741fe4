from __future__ import annotations

import pandas as pd
import pytest

from aikit.errors import TemplateError
from aikit.prompts import Template, few_shot


def test_render_declared_variables() -> None:
    t = Template("Classify: {{ text }}\nLabels: {{ labels | join(', ') }}")
    assert t.variables == {"text", "labels"}
    assert t.render(text="great!", labels=["pos", "neg"]) == "Classify: great!\nLabels: pos, neg"


def test_missing_and_unknown_variables_are_named() -> None:
    t = Template("Hello {{ name }}")
    with pytest.raises(TemplateError, match="needs variable 'name'; pass name="):
        t.render()
    with pytest.raises(TemplateError, match="has no variable 'nmae'; it declares: name"):
        t.render(name="a", nmae="b")


def test_undeclared_use_is_refused() -> None:
    with pytest.raises(TemplateError, match="uses 'other', which is not declared"):
        Template("{{ a }} {{ other }}", variables=["a"])


def test_sandbox_blocks_attribute_escapes() -> None:
    t = Template("{{ x.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(TemplateError, match=r"unsafe|undefined"):
        t.render(x="")


def test_syntax_error_names_line() -> None:
    with pytest.raises(TemplateError, match="line 2"):
        Template("ok\n{{ broken ")


def test_from_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "p.j2"
    path.write_text("Q: {{ q }}")
    assert Template.from_file(path).render(q="why") == "Q: why"


def test_few_shot_from_list_and_dataframe_agree() -> None:
    examples = [{"input": "2+2", "output": "4"}, {"input": "3+3", "output": "6"}]
    expected = [
        {"role": "system", "content": "Do arithmetic."},
        {"role": "user", "content": "2+2"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "3+3"},
        {"role": "assistant", "content": "6"},
        {"role": "user", "content": "5+5"},
    ]
    assert few_shot(examples, "5+5", system="Do arithmetic.") == expected
    assert few_shot(pd.DataFrame(examples), "5+5", system="Do arithmetic.") == expected


def test_few_shot_with_template_and_missing_field() -> None:
    rows = [{"text": "I loved it", "label": "positive"}]
    msgs = few_shot(
        rows, "meh", input_key="text", output_key="label", template="Review: {{ text }}"
    )
    assert msgs[0]["content"] == "Review: I loved it"
    assert msgs[-1] == {"role": "user", "content": "Review: meh"}
    with pytest.raises(TemplateError, match="example 1 has no 'output' field"):
        few_shot([{"input": "x"}])


def test_a_prompt_keeps_variants_per_model_and_family() -> None:
    from aikit.prompts import Prompt

    prompt = Prompt(
        "Classify: {{ text }}",
        overrides={"base": "Text: {{ text }}\nLabel:", "gpt-4o": "Label this: {{ text }}"},
    )
    assert prompt.choose(("gemma-3-270m", "gemma", "base"))[0] == "base"
    assert prompt.choose(("smollm2-135m-instruct", "smollm2", "instruct"))[0] == "default"
    assert prompt.choose(("gpt-4o", "hosted", "instruct"))[1].render(text="x") == "Label this: x"
    assert prompt.variables == {"text"}


def test_a_prompt_variant_with_other_variables_is_refused() -> None:
    from aikit.prompts import Prompt

    with pytest.raises(TemplateError, match=r"override 'base' declares review, the default text"):
        Prompt("Classify: {{ text }}", overrides={"base": "Review: {{ review }}"})
