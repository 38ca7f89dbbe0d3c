"""The scale ladder's rules (bench/run/config/ladder.py): shapes spread over the range, exact counts, budgets."""

from __future__ import annotations

import math

import pytest

from bench.run.config.ladder import ASPECT, HEAD_DIM, build_ladder, parse_range, shape_for
from models import TransformerConfig, count_params


def ladder(**kw):
    args = dict(low=2e4, high=1e6, rungs=5, base=TransformerConfig(vocab_size=256, block_size=128),
                batch_tokens=16 * 128, base_lr=3e-3)
    args.update(kw)
    return build_ladder(**args)


def test_rungs_grow_log_evenly_and_their_counts_are_the_built_models():
    rungs = ladder()
    params = [r.params for r in rungs]
    assert params == sorted(params) and len(set(params)) == len(params)
    assert 1e4 < params[0] < 4e4 and 5e5 < params[-1] < 2e6  # the range asked, to the rounding of shapes
    ratios = [b / a for a, b in zip(params, params[1:])]
    assert max(ratios) / min(ratios) < 3  # roughly log-even despite integer layers
    for r in rungs:
        cfg = TransformerConfig(vocab_size=256, block_size=128, d_model=r.d_model, n_layers=r.n_layers,
                                n_heads=r.n_heads, ref_intermediate_size=r.ref_intermediate_size)
        assert count_params(cfg).non_embedding == r.params
        assert r.d_model % HEAD_DIM == 0 and r.n_heads * HEAD_DIM == r.d_model


def test_the_micro_preset_is_what_the_rule_gives_at_its_size():
    # micro: d=128, 4 layers, SwiGLU 344 (12 d^2 L = 786k)
    assert shape_for(12 * 128 ** 2 * 4) == (128, 4)
    assert ASPECT == 128 // 4


def test_budgets_follow_tokens_per_param_and_the_lr_shrinks_with_width():
    rungs = ladder(tokens_per_param=20)
    for r in rungs:
        assert r.tokens == r.max_steps * 16 * 128
        assert r.tokens >= 20 * r.params or r.max_steps == 20
        assert r.tokens - 20 * r.params < 16 * 128 or r.max_steps == 20  # whole steps, no more than one extra
        assert r.lr == pytest.approx(3e-3 * min(1.0, 128 / r.d_model))
        assert 1 <= r.warmup_steps <= math.ceil(0.1 * r.max_steps)
    assert ladder(tokens_per_param=40)[-1].max_steps >= 2 * ladder(tokens_per_param=20)[-1].max_steps - 1


def test_shapes_that_round_together_are_kept_once():
    rungs = ladder(low=2e4, high=2.2e4, rungs=4)
    assert len({(r.d_model, r.n_layers) for r in rungs}) == len(rungs) < 4


@pytest.mark.parametrize("text", ["1e6:2e4", "2e4", "a:b", "0:1e6", "2e4:inf"])
def test_a_bad_range_is_one_line(text):
    with pytest.raises(ValueError, match="LOW:HIGH"):
        parse_range(text)


def test_fewer_than_two_rungs_is_refused():
    with pytest.raises(ValueError, match="at least 2"):
        ladder(rungs=1)
