"""Property tests: whatever a cluster file holds, `check` answers without a traceback."""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hbdeploy import source, validate
from hbdeploy.errors import ConfigError
from hbdeploy.model import Cluster
from hbdeploy.validate import KNOWN_KEYS

PATH = Path("fuzz.yml")


def outcome(data: bytes) -> Cluster | ConfigError:
    """Load ``data`` as a cluster file: a Cluster or a ConfigError, nothing else."""
    try:
        return validate.load(source.from_document(source.parse_yaml(data, "fuzz.yml"), PATH),
                             environ={})
    except ConfigError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert str(problem).startswith("config error: ")
            assert "\n" not in problem.path
        return exc


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
    st.text(max_size=20), st.sampled_from(["10.0.0.1", "10.0.0.2", "224.1.1.1", "500ms", "on",
                                           "IPaddr::10.0.0.9", "haproxy", ":sym"]),
)
keys = st.one_of(st.sampled_from((*KNOWN_KEYS, "heartbeat", ":heartbeat", "n1", "n2", "ip")),
                 st.text(max_size=8), st.integers(0, 9))
documents = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(keys, children, max_size=6)),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_any_yaml_document(doc) -> None:
    outcome(yaml.safe_dump(doc).encode())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes(data: bytes) -> None:
    outcome(data)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("{}[]:,-&*!|>'\"#%@` \n\tab1.?")), max_size=80))
def test_yaml_punctuation(text: str) -> None:
    outcome(text.encode())


def test_deep_nesting_and_alias_bomb() -> None:
    assert isinstance(outcome(b"[" * 5000 + b"]" * 5000), ConfigError)
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(12))
    assert isinstance(outcome(bomb.encode()), ConfigError)
