"""The mini world: its tasks, the shipped splits, and byte-identical regeneration."""
import collections
import filecmp
import random

import pytest

from rlhf_core.world import corpus, tasks
from rlhf_core.world.data import load_split, read_jsonl
from rlhf_core.common.paths import DATA_DIR
from rlhf_core.world.corpus import SPLITS

PROMPT_SPLITS = ("sft", "rm", "ppo", "dev", "eval")


def test_regeneration_is_byte_identical(tmp_path):
    corpus.main(["--out", str(tmp_path)])
    for name in SPLITS:
        assert filecmp.cmp(tmp_path / f"{name}.jsonl", DATA_DIR / f"{name}.jsonl", shallow=False), name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp files left behind"


def test_at_least_six_families_in_every_split():
    for name in PROMPT_SPLITS:
        families = set(load_split(name)["family"])
        assert len(families) >= 6, (name, families)
        assert families == {t.family for t in tasks.all_tasks()}


def test_prompts_are_disjoint_between_splits():
    seen = {}
    for name in PROMPT_SPLITS:
        prompts = list(load_split(name)["prompt"])
        assert len(prompts) == len(set(prompts)), f"{name} repeats a prompt"
        for p in prompts:
            assert p not in seen, f"{p!r} is in both {seen[p]} and {name}"
            seen[p] = name


def test_split_sizes_echo_the_paper_ratios():
    sizes = {name: len(load_split(name)) for name in PROMPT_SPLITS}
    # InstructGPT: 13k SFT, 33k RM, 31k PPO prompts
    assert sizes["rm"] / sizes["sft"] == pytest.approx(33 / 13, rel=0.1)
    assert (sizes["ppo"] + sizes["dev"]) / sizes["sft"] == pytest.approx(31 / 13, rel=0.1)  # dev is carved from ppo
    assert sizes["dev"] == pytest.approx(corpus.DEV_FRACTION * (sizes["ppo"] + sizes["dev"]), abs=9)
    assert sizes["eval"] >= 100


def test_every_prompt_is_a_world_task_in_chat_format():
    for name in PROMPT_SPLITS:
        for record in load_split(name):
            assert record["prompt"].startswith("Human: ") and record["prompt"].endswith("\nAssistant:")
            assert tasks.find_task(record["prompt"]).family == record["family"]


def test_demonstrations_vary_like_real_labelers_and_continue_the_prompt():
    from rlhf_core.world.labeler import SimulatedLabeler
    lab = SimulatedLabeler()
    records = list(load_split("sft"))
    styles = collections.Counter(r["style"] for r in records)
    for style, share in corpus.DEMONSTRATION_STYLES.items():  # the shipped mix is the documented one
        assert styles[style] / len(records) == pytest.approx(share, abs=0.08), styles
    for record in records:
        assert record["response"].startswith(" ") and not record["response"].startswith("  ")
        j = lab.explain(record["prompt"], record["response"])
        if record["style"] == "plain":
            assert j.gold == 10.0, (record, j.notes)
        if record["style"] == "padded":  # right, but padded: only the style costs
            assert j.helpful == j.honest == j.harmless == 1 and j.fluent < 1, (record, j.notes)
            assert any(note.startswith("pads the answer") for note in j.notes)
        if record["style"] == "terse" and j.gold < 10:  # counting and tone have no terse form
            assert j.helpful == j.honest == 1 and any("fragment" in n or "why" in n for n in j.notes), (record, j.notes)
        assert j.harmless == 1, record  # no demonstration insults or helps with harm
    # the preferred plain sentence is the most common single style, but most answers vary from it
    assert styles["plain"] == max(styles.values()) and styles["plain"] < 0.6 * len(records)


def test_corpus_has_mixed_quality():
    from rlhf_core.world.labeler import SimulatedLabeler
    lab = SimulatedLabeler()
    texts = list(load_split("pretrain")["text"])
    assert len(texts) >= 10000
    judgements = []
    for text in texts[:3000]:
        if not text.startswith("Human:"):
            continue
        prompt, response = text.split("\nAssistant:", 1)
        response = response.split("\nHuman:", 1)[0]
        judgements.append(lab.explain(prompt + "\nAssistant:", response))
    n = len(judgements)
    rates = {"wrong": sum(j.hallucinated for j in judgements) / n,
             "rude": sum(j.toxic for j in judgements) / n,
             "perfect": sum(j.gold == 10 for j in judgements) / n}
    assert 0.1 < rates["wrong"] < 0.3, rates
    assert 0.1 < rates["rude"] < 0.35, rates
    assert 0.25 < rates["perfect"] < 0.5, rates


@pytest.mark.parametrize("flaw", ["wrong_fact", "rude", "ramble", "repeat", "off_task", "short"])
def test_every_flaw_costs_gold(flaw):
    from rlhf_core.world.labeler import SimulatedLabeler
    lab, rng, every_task = SimulatedLabeler(), random.Random(0), tasks.all_tasks()
    for task in rng.sample([t for t in every_task if t.family != "refuse"], 60):
        bad = corpus.flawed_response(task, flaw, rng, every_task)
        assert lab.score(task.prompt, bad) < 10.0, (task.instruction, flaw, bad)


def test_find_task_reads_the_last_turn_and_rejects_unknown_text():
    few_shot = "Human: What is 2 plus 2?\nAssistant: 2 plus 2 is 4.\nHuman: What colour is snow?\nAssistant:"
    assert tasks.last_instruction(few_shot) == "What colour is snow?"
    assert tasks.find_task(few_shot).answer == "white"
    with pytest.raises(ValueError, match="not an instruction of the mini world"):
        tasks.find_task("Human: What is the meaning of life?\nAssistant:")


def test_family_counts_are_balanced_enough():
    counts = collections.Counter(t.family for t in tasks.all_tasks())
    assert min(counts.values()) >= 20 and max(counts.values()) <= 150, counts


def test_read_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "sft.jsonl"
    path.write_text('{"prompt": "a", "response": "b", "family": "add"}\n{"prompt": "a", oops\n')
    with pytest.raises(ValueError, match=r"sft.jsonl, line 2: not valid JSON"):
        load_split("sft", data_dir=tmp_path)
    path.write_text('{"prompt": "a", "family": "add"}\n')
    with pytest.raises(ValueError, match=r"line 1: missing text field\(s\) \['response'\]"):
        load_split("sft", data_dir=tmp_path)
    path.write_text('["not", "an", "object"]\n')
    with pytest.raises(ValueError, match="line 1: expected a JSON object"):
        read_jsonl(path)


def test_load_split_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="unknown split 'train'"):
        load_split("train")
    with pytest.raises(FileNotFoundError, match="python -m rlhf_core.world"):
        load_split("rm", data_dir=tmp_path)


def test_load_split_returns_datasets_with_the_contracted_columns():
    import datasets
    for name, columns in {"pretrain": {"text"}, "sft": {"prompt", "response", "style"}, "rm": {"prompt"},
                          "ppo": {"prompt"}, "dev": {"prompt"}, "eval": {"prompt"}}.items():
        ds = load_split(name)
        assert isinstance(ds, datasets.Dataset)
        assert columns <= set(ds.column_names), (name, ds.column_names)
