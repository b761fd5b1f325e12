from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from relia.detect import create
from relia.detect.checkpoint import pack, unpack
from relia.errors import DetectorError


def test_pack_is_compact_and_round_trips() -> None:
    det = create("cusum")
    det.score(np.arange(100.0))
    blob = pack(det.state_dict())
    assert len(blob) < 400
    back = unpack(blob)
    assert back["n_seen"] == 100 and back["detector"] == "cusum"
    np.testing.assert_array_equal(back["state"]["st"], det.state_dict()["state"]["st"])


@given(st.binary(max_size=200))
def test_garbage_is_a_detector_error(blob: bytes) -> None:
    try:
        unpack(blob)
    except DetectorError:
        pass


def test_truncated_checkpoint_is_refused() -> None:
    blob = pack(create("mad").state_dict())
    with pytest.raises(DetectorError, match="corrupt"):
        unpack(blob[:-3])


def test_checkpoint_of_another_detector_or_config_is_refused() -> None:
    state = create("mad").state_dict()
    with pytest.raises(DetectorError, match="not 'cusum'"):
        create("cusum").load_state_dict(state)
    with pytest.raises(DetectorError, match="another config"):
        create("mad", window=32).load_state_dict(state)
