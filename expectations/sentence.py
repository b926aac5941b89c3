"""Data Docs read a custom expectation as a sentence, not as its raw arguments: each expectation
says what it checks in `sentence(kwargs)`, and this renderer (GX's legacy prescriptive renderer,
which Data Docs use for suites and validation results) shows it. Arguments only, never data."""

from __future__ import annotations

from typing import Any

from great_expectations.expectations.expectation import BatchExpectation
from great_expectations.render import LegacyRendererType, RenderedStringTemplateContent
from great_expectations.render.renderer.renderer import renderer


class Described(BatchExpectation):
    """A BatchExpectation with a sentence (subclasses implement `sentence`)."""

    @classmethod
    def sentence(cls, kwargs: dict[str, Any]) -> str:
        raise NotImplementedError

    @classmethod
    @renderer(renderer_type=LegacyRendererType.PRESCRIPTIVE)
    def _prescriptive_renderer(cls, configuration=None, result=None, runtime_configuration=None):
        if configuration is None and result is not None:
            configuration = result.expectation_config
        kwargs = dict(configuration.kwargs) if configuration is not None else {}
        return [
            RenderedStringTemplateContent(
                content_block_type="string_template",
                string_template={"template": cls.sentence(kwargs), "params": {}, "styling": {}},
            )
        ]


def listed(names: Any) -> str:
    return ", ".join(str(n) for n in names or []) or "(none)"
