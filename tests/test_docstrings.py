"""Every public function, module and the CLI are documented and importable."""
from __future__ import annotations

import inspect

import pytest

import jaxgemm as jg


def _public():
    for name in jg.__all__:
        obj = getattr(jg, name)
        if callable(obj) or inspect.ismodule(obj):
            yield name, obj


@pytest.mark.parametrize("name,obj", list(_public()), ids=[n for n, _ in _public()])
def test_public_callable_has_docstring(name, obj):
    doc = inspect.getdoc(obj)
    assert doc and len(doc.strip()) > 20, f"jaxgemm.{name} has no docstring"


def test_all_is_exported():
    for name in jg.__all__:
        assert hasattr(jg, name), name
    assert len(jg.DENSE_GEMMS) == 8 and len(jg.GROUPED_GEMMS) == 6


def test_gemm_docstrings_document_args():
    for name in jg.DENSE_GEMMS + jg.GROUPED_GEMMS:
        doc = inspect.getdoc(getattr(jg, name))
        assert "Args:" in doc and "Returns:" in doc, name


def test_cli_self_check_quick(capsys):
    from jaxgemm.__main__ import main

    rc = main(["--quick", "--no-bench"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "FAIL" not in out
    assert "self-check:" in out and "jaxgemm" in out.splitlines()[0]
