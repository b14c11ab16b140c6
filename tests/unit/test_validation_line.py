"""pydantic's ValidationError as one line (infra.validation.errors_line)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError, model_validator

from infra.validation import errors_line


class Size(BaseModel):
    width_px: int
    height_px: int


class Image(BaseModel):
    url: str
    size: Size

    @model_validator(mode="after")
    def _square(self) -> Image:
        if self.size.width_px != self.size.height_px:
            raise ValueError("the image must be square")
        return self


def _error(model: type[BaseModel], doc: object) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        model.model_validate(doc)
    return info.value


def test_each_error_is_its_dotted_path_and_message_joined_with_semicolons() -> None:
    exc = _error(Image, {"url": 5, "size": {"width_px": "wide"}})
    assert errors_line(exc) == (
        "url: Input should be a valid string;"
        " size.width_px: Input should be a valid integer, unable to parse string as an integer;"
        " size.height_px: Field required"
    )


def test_prefix_separator_and_upper_case_shape_the_location() -> None:
    exc = _error(Size, {"width_px": "wide", "height_px": 1})
    assert errors_line(exc, prefix="data.").startswith("data.width_px: Input should be")
    assert errors_line(exc, prefix="APP_", sep="_", upper=True).startswith("APP_WIDTH_PX: ")


def test_an_error_about_the_whole_input_is_labelled_or_bare() -> None:
    exc = _error(Image, {"url": "u", "size": {"width_px": 1, "height_px": 2}})
    assert errors_line(exc, whole="payload") == "payload: Value error, the image must be square"
    assert errors_line(exc, prefix="data.") == "Value error, the image must be square"


def test_the_input_values_never_appear() -> None:
    exc = _error(Size, {"width_px": "secret-token-123", "height_px": 1})
    assert "secret-token-123" not in errors_line(exc, whole="payload")
    assert "secret-token-123" in str(exc)  # pydantic's own message would leak it
