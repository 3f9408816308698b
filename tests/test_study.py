"""t2i.study: the skeleton the three paired studies share. Rows drawn by one study share prompts, seeds and the real
reference (so two draws of the same row are the same images), evaluations are counted, and a report published from
some inputs is up to date for those inputs only."""

from __future__ import annotations

import numpy as np

from t2i import evaluate, paths
from t2i.experiment import Run
from t2i.study import Study


def test_a_study_draws_paired_rows_counts_evaluations_and_knows_when_its_report_is_fresh(smoke_cfg, fit, tmp_path):
    run = Run.open(fit(smoke_cfg.replace(epochs=1, judge_epochs=1), paths.run_dir("mnist", "study")))
    pipe, judge = run.pipe, run.judge
    extractor = evaluate.make_extractor("judge", judge, pipe.device)
    study = Study(pipe, judge, [extractor], tmp_path / "study", 1, skip_real=2, grid=[1, 2])
    assert study.inputs["grid"] == [1, 2] and study.inputs["reference_skips"] == 2
    assert study.inputs["features"] == [extractor.name] and study.inputs["sampler"] == pipe.sampling.describe()
    assert not study.up_to_date()

    shared = study.shared()
    assert study.shared() is shared and shared.n == len(shared.prompts) == 10  # one per class, made once
    first, again = study.draw(3.0), study.draw(3.0)
    np.testing.assert_array_equal(first.features[extractor.name].x, again.features[extractor.name].x)  # paired
    assert len(first.hits) == shared.n and first.seconds > 0
    assert first.evaluations == 2 * pipe.num_inference_steps  # conditional and unconditional, counted
    assert study.draw(1.0).evaluations == pipe.num_inference_steps  # w = 1 is the conditional model alone
    other_seed = study.draw(3.0, seed=pipe.seed_for(None) + 1)
    assert not np.array_equal(other_seed.features[extractor.name].x, first.features[extractor.name].x)

    study.publish(
        tables={"rows": ([{"w": 3.0, "adherence": float(first.hits.mean())}], "one row")},
        figures={},
        texts={"summary.md": "# a study\n"},
        samples=shared.n,
    )
    assert study.up_to_date()
    assert not Study(pipe, judge, [extractor], tmp_path / "study", 1, skip_real=2, grid=[1, 3]).up_to_date()
