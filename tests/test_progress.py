"""radcascade demo's progress lines (epoch or case, elapsed, ETA) and its closing table."""

from ignite.engine import Engine

from pipelines.cli.progress import StageProgress, StageRow, format_table, stage_row


class _Parser(dict):
    def get_parsed_content(self, id_):
        return self[id_]


class _Workflow:
    def __init__(self, **ids):
        self.parser = _Parser(ids)


def test_a_trainer_reports_each_epoch_and_an_evaluator_each_case():
    lines: list[str] = []
    trainer, evaluator = Engine(lambda e, b: None), Engine(lambda e, b: None)
    StageProgress("liver train", lines.append).attach_to(
        _Workflow(**{"train#trainer": trainer, "validate#evaluator": evaluator})
    )
    trainer.run([0, 1], max_epochs=3)
    evaluator.run([0, 1, 2])  # the validation of a training stage is not reported
    assert [line.split("  ")[0] for line in lines] == [f"[liver train] epoch {k}/3" for k in (1, 2, 3)]
    assert "elapsed, ETA" in lines[0] and lines[-1].endswith("ETA 0:00")

    cases: list[str] = []
    StageProgress("liver evaluate", cases.append).attach_to(_Workflow(**{"validate#evaluator": evaluator}))
    evaluator.run([0, 1, 2])
    assert [line.split("  ")[0] for line in cases] == [f"[liver evaluate] case {k}/3" for k in (1, 2, 3)]


def test_the_closing_table_reads_each_stages_figures(tmp_path):
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.csv").write_text("test_mean_dice,0.71\ntest_liver_dice,0.9\ntest_hd95_mm,21.2\n")
    row = stage_row("evaluate", 75.4, _Workflow(), tmp_path)
    assert row.figures == "mean_dice 0.710, liver_dice 0.900"
    table = format_table([StageRow("prepare", 3.0, "default data ready", "data/x"), row]).splitlines()
    assert table[0].split() == ["stage", "time", "figures", "outputs"]
    assert table[3].startswith("evaluate  1:15  mean_dice 0.710, liver_dice 0.900")
    assert table[3].endswith(str(tmp_path / "eval" / "report.html"))


def test_console_to_log_keeps_the_console_for_progress_lines_only(tmp_path, capsys):
    import logging
    import sys

    from pipelines.cli.progress import console_to_log

    root = logging.getLogger()
    before = root.handlers[:], root.level
    with console_to_log(tmp_path / "demo.log") as write:
        logging.getLogger("monai.engine").info("Epoch: 1/25, Iter: 1/5 -- train_loss: 2.05")
        logging.getLogger("mlflow.store").info("Creating initial MLflow database tables...")
        print("Loading dataset: 100%")
        print("a library's warning", file=sys.stderr)  # where warnings.showwarning writes
        write("[liver train] epoch 1/25  0:10 elapsed, ETA 3:54")
    console = capsys.readouterr()
    assert console.out == "[liver train] epoch 1/25  0:10 elapsed, ETA 3:54\n" and console.err == ""
    log = (tmp_path / "demo.log").read_text()
    for line in ("train_loss: 2.05", "Creating initial MLflow", "Loading dataset", "a library's warning"):
        assert line in log
    assert (root.handlers, root.level) == before
