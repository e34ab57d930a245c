"""The committed pipeline summaries (data/results/) and the README's tables made from them: no stale number."""
import json
import re
import statistics
from pathlib import Path

import pytest

from rlhf_core import load_split
from rlhf_core.evaluate import WIN_RATE_PAIRS, WinRate
from rlhf_core.pipeline import PUBLISHED_SEEDS, published_results

README = Path(__file__).resolve().parents[1] / "README.md"

# The README's comparison table: row label -> the results' win-rate key (seeds 0, 1, 2 in its first three columns).
WIN_RATE_ROWS = {
    "PPO with a perfect reward vs SFT": "ppo_perfect_vs_sft",
    "PPO vs SFT": "ppo_vs_sft",
    "PPO-ptx vs SFT": "ppo_ptx_vs_sft",
    "PPO vs base": "ppo_vs_base",
    "PPO with a perfect reward vs base": "ppo_perfect_vs_base",
    "PPO-ptx vs base": "ppo_ptx_vs_base",
    "PPO-ptx vs few-shot base": "ppo_ptx_vs_prompted_base",
    "SFT vs base": "sft_vs_base",
    "tiny PPO vs small SFT": "tiny_ppo_vs_small_sft",
}
# Its gold table's columns after the seed: a model's gold score, or SFT decoded another way.
GOLD_COLUMNS = ["base", "prompted_base", "sft", "t0.7", "t0.5", "greedy", "labeler_best_of_4", "ppo", "ppo_ptx",
                "ppo_perfect", "small_base", "small_sft"]
KL_ROWS = {"KL(PPO ‖ SFT), nats per response": "ppo_vs_sft", "KL(PPO-ptx ‖ SFT)": "ppo_ptx_vs_sft",
           "KL(PPO with a perfect reward ‖ SFT)": "ppo_perfect_vs_sft"}
UNTUNED_SEEDS = (31, 7, 13, 42, 2026)  # the README's table of the seeds no setting was tuned on, one row each


def readme_rows() -> dict[str, list[str]]:
    """The README's table rows, first cell -> the other cells, bold marks removed."""
    rows = {}
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            cells = [c.strip().replace("**", "") for c in line.strip().strip("|").split("|")]
            rows.setdefault(cells[0], cells[1:])
    return rows


def as_text(w: dict) -> str:
    return str(WinRate.from_dict(w))


def test_the_published_summaries_are_whole_and_consistent():
    published = published_results(PUBLISHED_SEEDS + UNTUNED_SEEDS)
    assert list(published) == list(PUBLISHED_SEEDS + UNTUNED_SEEDS)
    held_out = len(load_split("eval"))
    for seed, results in published.items():
        assert results["config"]["seed"] == seed and results["torch_threads"] == 1, "made as the README says"
        assert set(results["win_rate"]) == set(WIN_RATE_PAIRS)
        for key, w in results["win_rate"].items():
            assert 0 <= w["ci95"][0] <= w["rate"] <= w["ci95"][1] <= 1, (seed, key)
            assert w["wins"] + w["ties"] + w["losses"] == held_out, "every held-out prompt, once"
        assert not any(key == "samples" or key.endswith("_history") for key in results), "a summary, not the run"


def test_the_readmes_three_seed_tables_are_the_published_numbers():
    published, rows = published_results(), readme_rows()
    for label, key in WIN_RATE_ROWS.items():
        assert rows[label][:3] == [as_text(published[seed]["win_rate"][key]) for seed in PUBLISHED_SEEDS], label
    for label, key in KL_ROWS.items():
        assert rows[label][:3] == [f"{published[seed]['kl'][key]:.2f}" for seed in PUBLISHED_SEEDS], label
    for seed in PUBLISHED_SEEDS:
        results = published[seed]
        golds = {**results["gold_score"], **{name: c["gold"] for name, c in results["sft_decoding"].items()}}
        assert rows[str(seed)][:len(GOLD_COLUMNS)] == [f"{golds[name]:.2f}" for name in GOLD_COLUMNS], seed


def test_the_readmes_untuned_seeds_table_is_the_published_numbers():
    rows = readme_rows()
    for seed, results in published_results(UNTUNED_SEEDS).items():
        gold, w, kl = results["gold_score"], results["win_rate"], results["kl"]
        decoding = results["sft_decoding"]
        assert rows[str(seed)] == [
            " / ".join(f"{gold[name]:.2f}" for name in ("base", "sft", "ppo", "ppo_ptx", "ppo_perfect")),
            *(as_text(w[key]) for key in ("ppo_vs_sft", "ppo_ptx_vs_sft", "ppo_perfect_vs_sft", "ppo_vs_base",
                                          "ppo_ptx_vs_base", "ppo_perfect_vs_base")),
            *(as_text(decoding[name]["win_rate"]) for name in ("t0.7", "greedy")),
            " / ".join(f"{kl[key]:.2f}" for key in ("ppo_vs_sft", "ppo_ptx_vs_sft", "ppo_perfect_vs_sft")) + " nats",
        ], seed


def test_published_results_say_how_to_remake_a_missing_or_broken_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"seed-0.json is missing: regenerate it with RLHF_THREADS=1 python -m "
                                                r"rlhf_core.pipeline --seed 0 .* --summary"):
        published_results(folder=tmp_path)
    (tmp_path / "seed-0.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        published_results(folder=tmp_path)
    (tmp_path / "seed-0.json").write_text(json.dumps({"config": {"seed": 1}, "gold_score": {}, "win_rate": {},
                                                      "kl": {}}))
    with pytest.raises(ValueError, match=re.escape("not the pipeline's summary for seed 0 (missing nothing, seed 1)")):
        published_results(folder=tmp_path)
    (tmp_path / "seed-0.json").write_text(json.dumps({"config": {"seed": 0}, "gold_score": {}}))
    with pytest.raises(ValueError, match=re.escape("missing ['win_rate', 'kl']")):
        published_results(folder=tmp_path)


def test_the_dev_lever_table_is_the_committed_runs():
    """data/results/README.md, *Two speed levers that are not faster*: each row's means over the seeds in
    data/results/dev-levers/ (written by benchmarks/dev_levers.py), and the seconds the prose quotes."""
    folder = README.parent / "data" / "results" / "dev-levers"
    runs = [json.loads(path.read_text()) for path in sorted(folder.glob("seed-*.json"))]
    assert sorted(run["seed"] for run in runs) == [0, 1, 2, 3]
    assert not any(run.get("quick") for run in runs)  # made before the script had --quick
    assert all(run["answers"] == 4 and run["threads"] == 1 for run in runs)
    text = " ".join((folder.parent / "README.md").read_text(encoding="utf-8").split())
    labels = {"default": "default", "rm_batch16": "reward model, batch 16 at lr 4.2e-4",
              "ppo_minibatch32": "PPO minibatch 32"}
    by_lever = {lever: [run["levers"][lever] for run in runs] for lever in labels}

    def mean(lever, key):
        return sum(row[key] for row in by_lever[lever]) / len(runs)

    def percent(lever, key):
        values = [100 * row[key] for row in by_lever[lever]]
        return f"{100 * mean(lever, key):.1f} % ({min(values):.1f}–{max(values):.1f})"

    for lever, label in labels.items():
        shared = all(row["rm_seconds"] == 0 for row in by_lever[lever])  # the default's reward model
        rm = ("(the default's) | —" if shared else
              f"{100 * mean(lever, 'rm_heldout_accuracy'):.1f} % | {mean(lever, 'rm_seconds'):.0f} s")
        seconds = f"{mean(lever, 'ppo_seconds'):.0f} s"
        cells = (f"| {label} | {percent(lever, 'vs_base')} | {percent(lever, 'vs_sft')} | {mean(lever, 'gold'):.2f} | "
                 f"{mean(lever, 'kl'):.2f} | {rm} | {f'**{seconds}**' if lever == 'ppo_minibatch32' else seconds} |")
        assert cells in text, cells

    rm_seconds = {lever: [row["rm_seconds"] for row in by_lever[lever]] for lever in ("default", "rm_batch16")}
    assert (f"({min(rm_seconds['rm_batch16']):.0f}–{max(rm_seconds['rm_batch16']):.0f} s against "
            f"{min(rm_seconds['default']):.0f}–{max(rm_seconds['default']):.0f} s)") in text
    default = [row["ppo_seconds"] for row in by_lever["default"]]
    wider = [row["ppo_seconds"] for row in by_lever["ppo_minibatch32"]]
    ratios = [w / d for w, d in zip(wider, default)]
    assert f"took {min(ratios):.2f}–{max(ratios):.2f}× as long as the default on every seed" in text
    extra = [w - d for w, d in zip(wider, default)]
    assert f"(+{min(extra):.0f} to +{max(extra):.0f} s; {sum(wider) / sum(default):.2f}× in total)" in text
    assert min(ratios) > 1
    for lever in ("rm_batch16", "ppo_minibatch32"):  # paired, seed by seed, in points
        for key in ("vs_base", "vs_sft"):
            diffs = [100 * (row[key] - base[key]) for row, base in zip(by_lever[lever], by_lever["default"])]
            assert f"{min(diffs):.1f} to +{max(diffs):.1f}".replace("-", "−") in text, (lever, key)


def test_the_split_check_rows_are_the_committed_runs():
    """data/results/README.md, *Dev against eval on the same models*: each seed's row is its run in
    data/results/split-check/ (benchmarks/dev_levers.py --levers default,perfect_reward --eval): PPO on eval, PPO with
    a perfect reward on eval, the published single answers, PPO on dev, each over base / over SFT."""
    folder = README.parent / "data" / "results" / "split-check"
    text = (folder.parent / "README.md").read_text(encoding="utf-8")
    runs = [json.loads(path.read_text()) for path in sorted(folder.glob("seed-*.json"))]
    assert sorted(run["seed"] for run in runs) == list(range(10))
    published = published_results((0, 1, 2, 7))

    def pair(d):
        return f"{100 * d['vs_base']:.1f} / {100 * d['vs_sft']:.1f} %"

    for run in runs:
        ppo, perfect = run["levers"]["default"], run["levers"]["perfect_reward"]
        assert run["answers"] == 4 and run["threads"] == 1 and not run["quick"]
        single = ""
        if run["seed"] in published:
            rates = published[run["seed"]]["win_rate"]
            single = f"{100 * rates['ppo_vs_base']['rate']:.1f} / {100 * rates['ppo_perfect_vs_base']['rate']:.1f} %"
        row = f"| {run['seed']} | {pair(ppo['eval'])} | {pair(perfect['eval'])} | {single} | {pair(ppo)} |"
        assert row in text, row


def test_the_split_checks_summary_is_its_runs():
    """The means and ranges both READMEs quote for the ten seeds judged with four answers are those of the runs."""
    runs = [json.loads(path.read_text())["levers"]
            for path in sorted((README.parent / "data" / "results" / "split-check").glob("seed-*.json"))]
    ppo_eval = [100 * run["default"]["eval"]["vs_base"] for run in runs]
    perfect_eval = [100 * run["perfect_reward"]["eval"]["vs_base"] for run in runs]
    dev = [100 * run["default"]["vs_base"] for run in runs]
    sft_dev, sft_eval = ([100 * x for x in xs] for xs in ([run["default"]["vs_sft"] for run in runs],
                                                          [run["default"]["eval"]["vs_sft"] for run in runs]))
    diffs = [d - e for d, e in zip(dev, ppo_eval)]
    gaps = [c - e for c, e in zip(perfect_eval, ppo_eval)]

    def mean(xs):
        return f"{sum(xs) / len(xs):.1f}"

    def span(xs):
        return f"{min(xs):.1f}–{max(xs):.1f}"

    results_readme = " ".join((README.parent / "data" / "results" / "README.md").read_text(encoding="utf-8").split())
    readme = " ".join(README.read_text(encoding="utf-8").split())
    assert (f"preferred to the base model on {mean(dev)} % of dev answers and {mean(ppo_eval)} % of eval answers, "
            f"to SFT on {mean(sft_dev)} and {mean(sft_eval)} %") in results_readme
    assert (f"dev minus eval is {min(diffs):.1f} to +{max(diffs):.1f} points over the base model (mean "
            f"{sum(diffs) / len(diffs):.1f}, standard deviation {statistics.stdev(diffs):.1f})"
            ).replace("-", "−") in results_readme
    at_85 = sum(x >= 85 for x in perfect_eval)
    assert max(ppo_eval) < 85 and at_85 == 3
    assert (f"the base model on {span(ppo_eval)} % of eval answers, no seed at 85 %, and PPO against the labeler "
            f"itself on {span(perfect_eval)} % ({mean(perfect_eval)} % on average; 85 % or more on three seeds of ten), "
            f"{mean(gaps)} points above ours on average ({min(gaps):.1f} to +{max(gaps):.1f}".replace("-", "−")
            ) in results_readme
    assert (f"PPO is preferred to the base model on {span(ppo_eval)} % of eval answers over ten seeds "
            f"({mean(ppo_eval)} % on average; across the seeds a standard deviation of "
            f"{statistics.stdev(ppo_eval):.1f} points") in readme
    assert (f"PPO against the labeler itself on {span(perfect_eval)} % ({mean(perfect_eval)} % on average), 85 % or "
            "more on only three seeds of ten") in readme


def test_the_longer_pretraining_record_is_its_runs():
    """data/results/README.md, *A base model pretrained three times as long*: its table's rows are the means over
    seeds 0–4 of data/results/longer-pretraining/ (two pretraining draws) and of the split check's runs of the shipped
    model; the paired changes, the false-fact rates and the counts of seeds at 85 % it quotes are theirs too."""
    results = README.parent / "data" / "results"
    folder = results / "longer-pretraining"
    text = " ".join((results / "README.md").read_text(encoding="utf-8").split())

    def runs(path, prefix, seeds=range(5)):
        return [json.loads((path / f"{prefix}seed-{seed}.json").read_text()) for seed in seeds]

    shipped = runs(results / "split-check", "")
    draws = {"1,800 steps, draw 0": runs(folder / "base-1800-s0", "default-"),
             "1,800 steps, draw 1": runs(folder / "base-1800-s1", "default-")}
    for draw in ("base-1800-s0", "base-1800-s1"):
        log = json.loads((folder / draw / "pretrain_log.json").read_text())
        assert log["config"]["steps"] == 1800 and f"{log['heldout_loss'][-1]:.3f}" == "0.587"
    assert f"{json.loads((README.parent / 'data' / 'base-tiny' / 'pretrain_log.json').read_text())['heldout_loss'][-1]:.3f}" == "0.640"
    assert "the held-out loss falls from 0.640 to 0.587 in both" in text

    def mean(values):
        return sum(values) / len(values)

    def rate(rows, lever, key):
        values = [100 * row["levers"][lever][key] for row in rows]
        return f"{mean(values):.1f} % ({min(values):.1f}–{max(values):.1f})"

    for label, rows in {"shipped (600 steps)": shipped, **draws}.items():
        assert all(row["answers"] == 4 and row["threads"] == 1 and not row["quick"] for row in rows)
        default = [row["levers"]["default"] for row in rows]
        cells = (f"| {label} | {mean([row['gold']['base'] for row in rows]):.2f} | "
                 f"{mean([row['gold']['sft'] for row in rows]):.2f} | {rate(rows, 'default', 'vs_base')} | "
                 f"{100 * mean([d['vs_sft'] for d in default]):.1f} % | {mean([d['gold'] for d in default]):.2f} | "
                 f"{mean([d['kl'] for d in default]):.2f} | {100 * mean([d['rm_heldout_accuracy'] for d in default]):.1f} % | "
                 f"{rate(rows, 'perfect_reward', 'vs_base')} |")
        assert cells in text, cells
    # the shipped model's runs again with the script that counts false facts: the same numbers, to the bit
    again = runs(folder / "shipped", "default-", range(2))
    measured = ("vs_base", "vs_sft", "gold", "kl", "rm_heldout_accuracy")  # not the seconds, nor eval (not judged)
    for rerun, first in zip(again, shipped):
        assert rerun["gold"] == first["gold"] and all(rerun["levers"][lever][key] == first["levers"][lever][key]
                                                      for lever in first["levers"] for key in measured)

    def false_facts(rows, who):
        return 100 * mean([row["false_fact_rate"][who] if who in row["false_fact_rate"]
                           else row["levers"][who]["false_fact_rate"] for row in rows])

    longer = [rows[:2] for rows in draws.values()]
    assert f"{false_facts(again, 'base'):.0f} %" == "35 %" and f"{false_facts(again, 'default'):.0f} %" == "18 %"
    assert [f"{false_facts(rows, 'base'):.0f}" for rows in longer] == ["17", "17"]
    assert sorted(round(false_facts(rows, "default")) for rows in longer) == [7, 8]
    assert ("the base model states a false fact in 17 % of its answers instead of 35 % (seeds 0 and 1), PPO in 7–8 % "
            "instead of 18 %") in text
    changes = []
    for rows in draws.values():
        paired = [100 * (row["levers"]["default"]["vs_base"] - first["levers"]["default"]["vs_base"])
                  for row, first in zip(rows, shipped)]
        over_sft = [100 * (row["levers"]["default"]["vs_sft"] - first["levers"]["default"]["vs_sft"])
                    for row, first in zip(rows, shipped)]
        changes.append((mean(paired), min(paired), max(paired), mean(over_sft)))
    (a, a_low, a_high, a_sft), (b, b_low, b_high, b_sft) = changes
    assert (f"only +{a:.1f} and +{b:.1f} points (paired, seed by seed, {a_low:.1f} to +{a_high:.1f} and {b_low:.1f} "
            f"to +{b_high:.1f}), and its win over SFT falls by {-a_sft:.1f} and {-b_sft:.1f}").replace("-", "−") in text
    gold = [mean([row["levers"]["default"]["gold"] for row in rows]) for rows in (*draws.values(), shipped)]
    assert (f"(PPO's gold {gold[0]:.2f} and {gold[1]:.2f} on two draws of it, against {gold[2]:.2f}; its false facts "
            f"more than halved) but the base model too: PPO's win over it moved by +{a:.1f} and +{b:.1f} points, over SFT by "
            f"{a_sft:.1f} and {b_sft:.1f}; with its reward model").replace("-", "−") in " ".join(README.read_text(encoding="utf-8").split())
    at_85 = [sum(100 * row["levers"]["perfect_reward"]["vs_base"] >= 85 for row in rows) for rows in draws.values()]
    assert at_85 == [3, 5] and "(on all five seeds of draw 1, three of five of draw 0)" in text
    # the reward model trained 4 epochs on each base model: its PPO run against the same seed's 2-epoch default
    longer_rm = {"base-1800-s0": draws["1,800 steps, draw 0"], "base-1800-s1": draws["1,800 steps, draw 1"],
                 "shipped": shipped}
    quoted = []
    for name, defaults in longer_rm.items():
        rows = [row["levers"]["rm_epochs4"] for row in runs(folder / name, "rm_epochs4-")]
        base_defaults = [row["levers"]["default"] for row in defaults]
        quoted.append((100 * mean([row["vs_base"] for row in rows]),
                       100 * mean([row["vs_base"] - d["vs_base"] for row, d in zip(rows, base_defaults)]),
                       100 * mean([row["vs_sft"] - d["vs_sft"] for row, d in zip(rows, base_defaults)]),
                       100 * mean([row["rm_heldout_accuracy"] for row in rows]),
                       100 * mean([d["rm_heldout_accuracy"] for d in base_defaults])))
    (a, da, sa, acc_a, _), (b, db, sb, acc_b, _), (c, dc, sc, acc_c, acc_shipped) = quoted
    assert (f"PPO over the base model {a:.1f} and {b:.1f} % on the two draws (+{da:.1f} and +{db:.1f} points over the "
            f"same seeds' 2-epoch runs), over SFT +{sa:.1f} and +{sb:.1f}, at the same held-out accuracy ({acc_a:.1f} "
            f"and {acc_b:.1f} %)") in text
    assert (f"{c:.1f} % over the base model (+{dc:.1f}) and +{sc:.1f} over SFT (accuracy {acc_c:.1f} % against "
            f"{acc_shipped:.1f} %)") in text
    assert max(a, b, c) < 85
    over_shipped = [100 * mean([row["levers"]["rm_epochs4"]["vs_base"] - first["levers"]["default"]["vs_base"]
                                for row, first in zip(runs(folder / name, "rm_epochs4-"), shipped)])
                    for name in ("base-1800-s0", "base-1800-s1")]
    assert (f"with its reward model trained 4 epochs instead of 2, by +{over_shipped[0]:.1f} and +{over_shipped[1]:.1f} "
            f"over the base model ({a:.1f} and {b:.1f} %), still short of 85 %.") in " ".join(
                README.read_text(encoding="utf-8").split())
