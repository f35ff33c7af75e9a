"""`gradprom cluster …` without a cloud: dry runs render Ray-validated configs, jobs are described exactly,
bad input is one line; and the placement checks a search runs before trials start."""

from __future__ import annotations

from pathlib import Path

import pytest

from gradprom.cli import command_names, main
from gradprom.cluster.launcher import job_entrypoint, job_runtime_env
from gradprom.errors import GradpromError
from gradprom.search.nodes import capacity_note, fits
from gradprom.search.request import SearchRequest, parse_resources, plan


def run(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("template", ["aws-gpu", "gcp-gpu", "onprem"])
def test_up_dry_run_renders_each_shipped_config(template: str, capsys: pytest.CaptureFixture, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADPROM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "token"))  # dry runs never create one
    code, out, err = run(capsys, "cluster", "up", template, "--dry-run")
    assert code == 0, err
    rendered = next((tmp_path / "cache" / "clusters").glob("*.yaml"))
    assert f"would run: ray up -y {rendered}" in " ".join(out.split())
    text = rendered.read_text()
    assert "GRADPROM_SOURCE_DIR" not in text and str(Path(__file__).resolve().parent.parent) in text
    assert str(tmp_path / "token") in text and not (tmp_path / "token").exists()
    code, out, _ = run(capsys, "cluster", "down", template, "--dry-run")
    assert code == 0 and "would run: ray down -y" in out


def test_kuberay_manifest_is_not_for_the_launcher(capsys: pytest.CaptureFixture) -> None:
    code, _, err = run(capsys, "cluster", "up", "kuberay-rayjob", "--dry-run")
    assert code == 2 and "kubectl apply" in err and len(err.strip().splitlines()) == 1


def test_templates_list_and_write(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    code, out, _ = run(capsys, "cluster", "templates")
    assert code == 0 and all(name in out for name in ("aws-gpu", "gcp-gpu", "onprem", "kuberay-rayjob"))
    code, out, _ = run(capsys, "cluster", "templates", "--write", "onprem", "--dest", str(tmp_path))
    written = list(tmp_path.iterdir())
    assert code == 0 and len(written) == 1 and "head_ip" in written[0].read_text()
    code, _, err = run(capsys, "cluster", "templates", "--write", "onprem", "--dest", str(tmp_path))
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_submit_dry_run_ships_the_package(capsys: pytest.CaptureFixture) -> None:
    code, out, err = run(capsys, "cluster", "submit", "--address", "http://127.0.0.1:8265", "--dry-run", "--",
                         "search", "--dataset", "camus", "--out", "/shared/results")
    assert code == 0, err
    text = " ".join(out.split())
    assert "entrypoint: python -m gradprom search --dataset camus --out /shared/results" in text
    assert "py_modules" in text and "gradprom" in text


def test_job_entrypoint_quotes_and_refuses_non_commands() -> None:
    names = command_names()
    assert {"search", "train", "pareto", "datasets", "cluster"} <= names
    assert job_entrypoint(["search", "-p", "lam=0.5 x"], names) == "python -m gradprom search -p 'lam=0.5 x'"
    with pytest.raises(GradpromError, match="after `--` comes the gradprom command"):
        job_entrypoint(["rm", "-rf", "/"], names)
    assert Path(job_runtime_env()["py_modules"][0]).name == "gradprom"


@pytest.mark.parametrize("args", [[], ["--address", "http://h:8265", "aws-gpu", "--", "search"]])
def test_submit_needs_exactly_one_target(args: list[str], capsys: pytest.CaptureFixture,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    code, _, err = run(capsys, "cluster", "submit", *(args or ["--", "search"]))
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_submit_to_nothing_listening_is_one_line(capsys: pytest.CaptureFixture) -> None:
    code, _, err = run(capsys, "cluster", "submit", "--address", "http://127.0.0.1:9", "--", "search")
    assert code == 2 and "cannot reach the Ray Jobs API" in err and len(err.strip().splitlines()) == 1


def test_trial_resources_are_parsed_and_checked() -> None:
    assert parse_resources(["A100=1", "gradprom_worker=0.5"]) == [("A100", 1.0), ("gradprom_worker", 0.5)]
    for bad in ("A100", "A100=0", "GPU=1", "=1", "x=abc"):
        with pytest.raises(GradpromError, match="--trial-resource"):
            parse_resources([bad])
    with pytest.raises(GradpromError, match="--trial-resource"):
        plan(SearchRequest(datasets=["synthetic"], trial_resources=["x=-1"]))


def test_capacity_local_fails_cluster_waits() -> None:
    nodes = [{"Resources": {"CPU": 2.0, "memory": 1e9}}, {"Resources": {"CPU": 0.0}}]
    assert fits(nodes[0]["Resources"], {"CPU": 1.0, "GPU": 0.0})
    assert capacity_note({"CPU": 1.0, "GPU": 0.0}, nodes, on_cluster=False) == ""
    assert "waiting for the autoscaler" in capacity_note({"CPU": 1.0, "GPU": 1.0}, nodes, on_cluster=True)
    with pytest.raises(GradpromError, match="no node of this local Ray runtime has what one trial needs"):
        capacity_note({"CPU": 1.0, "A100": 1.0}, nodes, on_cluster=False)


@pytest.fixture()
def no_env_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)


@pytest.mark.parametrize("target", [["--address", "http://127.0.0.1:8265"], ["aws-gpu"], ["FILE"]],
                         ids=["address", "template", "config-file"])
def test_submit_takes_the_command_with_its_program_name(capsys: pytest.CaptureFixture, tmp_path: Path,
                                                        no_env_address: None, target: list[str]) -> None:
    """`-- gradprom search …` (as one would type it) submits `search …`, whatever the target."""
    config = tmp_path / "my-cluster.yaml"
    config.write_text("cluster_name: mine\n")
    target = [str(config) if t == "FILE" else t for t in target]
    code, out, err = run(capsys, "cluster", "submit", *target, "--dry-run", "--", "gradprom", "search",
                         "--dataset", "camus", "--out", "/shared/results")
    assert code == 0, err
    text = " ".join(out.split())
    assert "entrypoint: python -m gradprom search --dataset camus --out /shared/results" in text, text
    where = "http://127.0.0.1:8265" if target[0] == "--address" else f"{target[0]} (through `ray dashboard`)"
    assert f"would submit to {where}" in text, text


@pytest.mark.parametrize(("args", "message"), [
    (["--address", "http://127.0.0.1:8265", "--", "rm", "-rf", "/"],
     "`rm` is not a gradprom command (commands: aggregate, cluster, datasets, models, pareto, pipelines, protocol, "
     "protocols, report, rerun, search, settings, spaces, strategies, train); "
     "after `--` comes the command the job runs"),
    (["--", "nosuch", "search"], "`nosuch` is neither a cluster config (no such file, and no shipped template of "
                                 "that name: aws-gpu, gcp-gpu, onprem, kuberay-rayjob) nor a gradprom command"),
    (["--bad", "--", "search"], "`gradprom cluster submit` has no option --bad"),
    (["--address", "http://127.0.0.1:8265", "--", "gradprom"], "after `--` comes the gradprom command the job runs, "
                                                               "e.g. `-- search --dataset camus`; got nothing"),
    (["--address", "http://127.0.0.1:8265", "aws-gpu", "--", "gradprom", "search"],
     "give a cluster config (aws-gpu) or --address, not both"),
])
def test_submit_says_what_the_words_before_the_command_are_not(capsys: pytest.CaptureFixture, no_env_address: None,
                                                                args: list[str], message: str) -> None:
    code, out, err = run(capsys, "cluster", "submit", "--dry-run", *args)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert message in " ".join(err.split()), err
    assert "would submit" not in out
