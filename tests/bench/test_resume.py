"""check_resumable: a benchmark folder records what it was measured with and refuses to resume with other settings."""

import json

import pytest

from hf_counterfactual.bench.resume import check_resumable


def test_records_settings_as_json_and_resumes_with_the_same(tmp_path):
    out = tmp_path / "seed0"
    check_resumable(str(out), {"seed": 0, "size": (8, 8)}, resume=False, earlier_work=False)
    assert json.loads((out / "bench_run.json").read_text()) == {"seed": 0, "size": [8, 8]}
    # the tuple compares equal to the list the record holds
    check_resumable(str(out), {"seed": 0, "size": (8, 8)}, resume=True, earlier_work=True)


def test_resume_refuses_other_settings_and_work_without_a_record(tmp_path):
    out = tmp_path / "seed0"
    check_resumable(str(out), {"seed": 0}, resume=False, earlier_work=False)
    with pytest.raises(
        ValueError, match=r"seed0 was measured with \{'seed': 0\}, not \{'seed': 1\}: use another"
    ):
        check_resumable(str(out), {"seed": 1}, resume=True, earlier_work=True)
    check_resumable(str(out), {"seed": 1}, resume=False, earlier_work=True)  # a fresh run records its own
    assert json.loads((out / "bench_run.json").read_text()) == {"seed": 1}
    (out / "bench_run.json").unlink()
    with pytest.raises(ValueError, match="seed0 has no bench_run.json to tell what it was measured with"):
        check_resumable(str(out), {"seed": 1}, resume=True, earlier_work=True)
    check_resumable(str(out), {"seed": 1}, resume=True, earlier_work=False)  # nothing to mix up: it starts
