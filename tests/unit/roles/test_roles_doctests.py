"""The docstring examples of the roles modules stay true."""

from __future__ import annotations

import doctest
from types import ModuleType

import pytest

from mmzero_runtime.roles import chat, coder, content_type, proposer, solver


@pytest.mark.parametrize(
    "module",
    [
        # every roles module with examples, and the ones without (zero attempts pass)
        pytest.param(module, id=module.__name__.rsplit(".", 1)[-1])
        for module in (chat, coder, content_type, proposer, solver)
    ],
)
def test_roles_module_doctests_pass(module: ModuleType) -> None:
    assert doctest.testmod(module).failed == 0
