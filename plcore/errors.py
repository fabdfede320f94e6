"""The one error tree of plcert.

Every failure that a user can cause, or that the numerical core detects, is a subclass of
:class:`PlcertError`. The HTTP layer (``service.errors``) and the worker map these classes to
status codes and job states in exactly one place each; a test checks that every class here is
mapped.

::

    PlcertError
    ├── InputError                  bad input from the user (HTTP 422, CLI exit 2)
    │   ├── ModelFormatError        the bytes are not a readable model (malformed ONNX, bad JSON)
    │   ├── ModelSpecError          a JSON model spec that fails validation
    │   ├── UnsupportedOperatorError an ONNX op / opset / attribute we do not implement
    │   ├── UnsafeModelError        external data, custom domains, over the size caps
    │   ├── DatasetError            unreadable or invalid data (NaN, shapes, caps)
    │   ├── ShapeMismatchError      data that does not fit the model
    │   └── OptionsError            invalid certification options
    ├── NonDeterministicModelError  the model gives different outputs on the same input
    ├── NumericalError              a solver failed in a way that invalidates a number
    ├── ResourceLimitError          the problem exceeds a configured memory / size budget (HTTP 413)
    └── Cancelled                   cooperative cancellation was requested
"""

from __future__ import annotations


class PlcertError(Exception):
    """Base class of every error raised on purpose by plcert."""

    #: short machine-readable code, stable across versions (used in problem+json ``type``)
    code: str = "plcert-error"


class InputError(PlcertError):
    """The user's input is invalid; nothing was computed."""

    code = "invalid-input"


class ModelFormatError(InputError):
    """The model bytes cannot be parsed (malformed ONNX protobuf, invalid JSON)."""

    code = "model-format"


class ModelSpecError(InputError):
    """A JSON model specification fails validation."""

    code = "model-spec"


class UnsupportedOperatorError(InputError):
    """An ONNX operator, opset version or attribute value that the importer does not implement."""

    code = "unsupported-operator"


class UnsafeModelError(InputError):
    """An ONNX file that could make the loader touch files or resources it must not."""

    code = "unsafe-model"


class DatasetError(InputError):
    """The dataset cannot be read or fails validation."""

    code = "dataset"


class ShapeMismatchError(InputError):
    """Data and model do not fit together (input shape, output dimension, sample counts)."""

    code = "shape-mismatch"


class OptionsError(InputError):
    """Invalid certification options."""

    code = "options"


class NonDeterministicModelError(PlcertError):
    """The loaded model is not a deterministic function of its input (dropout, randomness)."""

    code = "non-deterministic-model"


class NumericalError(PlcertError):
    """A numerical procedure failed in a way that would make a reported number wrong."""

    code = "numerical"


class ResourceLimitError(PlcertError):
    """The problem is larger than the configured limits (samples, parameters, memory)."""

    code = "resource-limit"


class Cancelled(PlcertError):
    """Raised by a progress hook when cancellation was requested; the computation stops."""

    code = "cancelled"


ALL_ERRORS: tuple[type[PlcertError], ...] = (
    PlcertError,
    InputError,
    ModelFormatError,
    ModelSpecError,
    UnsupportedOperatorError,
    UnsafeModelError,
    DatasetError,
    ShapeMismatchError,
    OptionsError,
    NonDeterministicModelError,
    NumericalError,
    ResourceLimitError,
    Cancelled,
)
