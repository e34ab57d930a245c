"""The bottom layer's small mechanisms: seed streams, eval mode for a block, the stopwatch, the course's paths."""
import time

import pytest
import torch

from rlhf_core.common.modes import eval_mode
from rlhf_core.common.paths import DATA_DIR, RUNS_DIR, run_path
from rlhf_core.common.seeds import STREAMS, comparison_sample_seed, derive_seed
from rlhf_core.common.timing import Stopwatch


def test_seed_streams_keep_the_offsets_every_published_number_used():
    assert derive_seed(7, "judge") == 7
    assert derive_seed(7, "ranking_labeler") == 107 and derive_seed(7, "ppo_labeler") == 207
    assert derive_seed(7, "second_labeler") == 1007
    assert derive_seed(3, "world_styles") == 4 and derive_seed(3, "world_dev") == 5
    assert derive_seed(0, "best_of_n", 3) == 3
    assert [comparison_sample_seed(5, r, i) for r in (0, 1) for i in (0, 1)] == [5, 6, 1005, 1006]


def test_seed_streams_of_a_run_are_distinct_where_they_feed_the_same_kind_of_generator():
    labelers = [derive_seed(0, s) for s in ("judge", "ranking_labeler", "ppo_labeler", "second_labeler")]
    assert len(set(labelers)) == len(labelers)  # four labelers, four noise streams


def test_an_unknown_seed_stream_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown random stream 'judg'.*judge"):
        derive_seed(0, "judg")
    assert set(STREAMS) >= {"judge", "ranking_labeler", "ppo_labeler", "second_labeler"}


@pytest.mark.parametrize("training", [True, False])
def test_eval_mode_turns_dropout_off_and_restores_the_mode_even_after_an_error(training):
    model = torch.nn.Sequential(torch.nn.Dropout(0.5)).train(training)
    with eval_mode(model) as inside:
        assert inside is model and not model.training and not model[0].training
    assert model.training is training and model[0].training is training
    with pytest.raises(RuntimeError):
        with eval_mode(model):
            raise RuntimeError("a failed measurement")
    assert model.training is training


def test_stopwatch_measures_wall_clock_time():
    stopwatch = Stopwatch()
    time.sleep(0.02)
    assert 0.015 < stopwatch.seconds() < 5
    assert stopwatch.seconds(1) == round(stopwatch.seconds(1), 1)
    first = stopwatch.lap()  # since the start
    time.sleep(0.02)
    second = stopwatch.lap()  # since the first lap only
    assert first >= 0.015 and 0.015 < second < first + 1 and stopwatch.seconds() >= first + second - 1e-6


def test_paths_point_at_the_repository():
    assert (DATA_DIR / "eval.jsonl").is_file() and DATA_DIR.parent == RUNS_DIR.parent
    assert run_path("sft") == RUNS_DIR / "sft-tiny" and run_path("rm", "small") == RUNS_DIR / "rm-small"
