"""The helpers the notebooks call (rlhf_core.notebook.tables): tables, the labeler's verdict, few-shot prompts, set-up."""
import random
from html.parser import HTMLParser

import pytest
import torch

from rlhf_core.world.labeler import Judgement, SimulatedLabeler
from rlhf_core.notebook.tables import corpus_turns, html_table, judgement_row, judgement_scores, setup_report
from rlhf_core.world.data import few_shot_prompts
from rlhf_core.common.paths import DATA_DIR
from rlhf_core.world.corpus import build_corpus
from rlhf_core.world.tasks import all_tasks, find_task, format_prompt


class _Cells(HTMLParser):
    """The text of every <th>/<td>, and every tag seen (to check nothing was injected)."""

    def __init__(self):
        super().__init__()
        self.cells, self.tags, self._in_cell = [], [], False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag in ("td", "th"):
            self.cells.append("")
            self._in_cell = True

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._in_cell = False

    def handle_data(self, data):
        if self._in_cell:
            self.cells[-1] += data


def parse(html_text: str) -> _Cells:
    parser = _Cells()
    parser.feed(html_text)
    return parser


def test_html_table_escapes_model_text_and_keeps_columns_in_first_seen_order():
    rows = [{"model": "base", "response": "<script>alert(1)</script>\nHuman: hi", "gold": 4.0},
            {"model": "sft", "gold": 9.5, "toxicity": 0.125}]
    parsed = parse(html_table(rows, formats={"toxicity": "{:.0%}"}, text_columns=["response"]))
    assert "script" not in parsed.tags  # escaped, not executed
    assert parsed.cells[:4] == ["model", "response", "gold", "toxicity"]
    assert parsed.cells[4:8] == ["base", "<script>alert(1)</script>\nHuman: hi", "4.00", ""]
    assert parsed.cells[8:] == ["sft", "", "9.50", "12%"]
    assert html_table([]) == "<p><i>(no rows)</i></p>"


def test_html_table_formats_ints_bools_and_floats():
    parsed = parse(html_table([{"n": 24000, "ok": True, "x": 0.5, "name": "sft"}], digits=1))
    assert parsed.cells[4:] == ["24,000", "✓", "0.5", "sft"]


def test_judgement_scores_show_points_that_add_up_to_gold():
    labeler = SimulatedLabeler()
    prompt = "Human: What colour is a banana?\nAssistant:"
    judgement = labeler.explain(prompt, " A banana is blue, idiot.")
    scores = judgement_scores(judgement)
    assert list(scores) == ["helpful", "honest", "harmless", "fluent", "gold", "notes"]
    points = sum(float(scores[c].rsplit("=", 1)[1]) for c in ("helpful", "honest", "harmless", "fluent"))
    assert points == pytest.approx(judgement.gold, abs=0.2)
    assert scores["gold"] == f"{judgement.gold:.1f} / 10"
    assert "false: blue" in scores["notes"] and "insults: idiot" in scores["notes"]
    assert judgement_scores(labeler.explain(prompt, " A banana is yellow."))["notes"] == "—"
    assert judgement_scores(Judgement(1.0, 0.0, 1.0, 0.5))["fluent"] == "0.50 × 2 = 1.0"


def test_judgement_row_is_the_breakdown_in_rubric_order():
    judgement = SimulatedLabeler().explain("Human: Add 2 and 3.\nAssistant:", " 2 plus 3 is 6.")
    row = judgement_row(judgement)
    assert list(row) == ["helpful", "honest", "harmless", "fluent", "gold", "notes"]
    assert (row["helpful"], row["honest"], row["gold"]) == (0.0, 0.0, judgement.gold)
    assert row["notes"] == "does not give the answer (5); false: 6"
    assert judgement_row(Judgement(1.0, 1.0, 1.0, 1.0))["notes"] == "—"


def test_corpus_turns_split_a_thread_back_into_scorable_turns():
    tasks = all_tasks()
    documents = build_corpus(random.Random(0), tasks, n_documents=300)
    threads = [d for d in documents if d.startswith("Human:")]
    assert threads and len(threads) < len(documents)  # both kinds of document are there
    for document in threads:
        turns = corpus_turns(document)
        assert turns and "\n".join(p + r for p, r in turns) == document
        for prompt, response in turns:
            assert prompt == find_task(prompt).prompt  # each prompt is an instruction of the world
            assert "Human:" not in response
    fact_page = next(d for d in documents if not d.startswith("Human:"))
    assert corpus_turns(fact_page) == []


def test_few_shot_prompts_end_with_the_prompt_and_score_as_its_instruction():
    tasks = all_tasks()[::40]
    demos = [(t.prompt, " A demonstration.") for t in all_tasks()[5::50]]
    prompts = [t.prompt for t in tasks]
    shots = few_shot_prompts(prompts, demos, k=3, seed=0)
    assert shots == few_shot_prompts(prompts, demos, k=3, seed=0)  # seeded
    assert shots != few_shot_prompts(prompts, demos, k=3, seed=1)
    for prompt, task, shot in zip(prompts, tasks, shots):
        assert shot.endswith("\n" + prompt) and shot.count("Human:") == 4
        assert find_task(shot) == task  # the labeler reads the last turn
        used = [d for d in demos if d[0] + d[1] + "\n" in shot]
        assert len(used) == 3
    assert few_shot_prompts(prompts, demos, k=0) == prompts
    with pytest.raises(ValueError, match="k must be"):
        few_shot_prompts(prompts, demos[:2], k=3)


def test_few_shot_prompt_with_a_real_demonstration_reads_like_the_corpus():
    demo = (format_prompt("What colour is a banana?"), " A banana is yellow.")
    (shot,) = few_shot_prompts([format_prompt("Add 2 and 3.")], [demo], k=1)
    assert shot == "Human: What colour is a banana?\nAssistant: A banana is yellow.\nHuman: Add 2 and 3.\nAssistant:"


def test_setup_report_passes_here_and_names_what_is_missing(tmp_path):
    rows = {row["item"]: row for row in setup_report()}
    assert rows["torch threads"]["found"].startswith(str(torch.get_num_threads()))
    for item in ("python", "torch", "transformers", "data/sft.jsonl", "data/eval.jsonl", "data/base-tiny"):
        assert rows[item]["ok"], rows[item]
    assert rows["data/sft.jsonl"]["found"].endswith("records")
    (tmp_path / "sft.jsonl").write_text((DATA_DIR / "sft.jsonl").read_text())
    rows = {row["item"]: row for row in setup_report(tmp_path)}
    assert rows["data/sft.jsonl"]["ok"]
    assert not rows["data/eval.jsonl"]["ok"] and "rlhf_core.world" in rows["data/eval.jsonl"]["note"]
    assert not rows["data/base-tiny"]["ok"] and "rlhf_core.stages.pretrain" in rows["data/base-tiny"]["note"]


def test_setup_report_names_the_device_and_a_device_this_machine_lacks(monkeypatch):
    monkeypatch.delenv("RLHF_DEVICE", raising=False)
    row = {row["item"]: row for row in setup_report()}["device"]
    assert row["ok"] and row["found"] == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setenv("RLHF_DEVICE", "tpu")
    row = {row["item"]: row for row in setup_report()}["device"]
    assert not row["ok"] and "RLHF_DEVICE='tpu'" in row["note"]
