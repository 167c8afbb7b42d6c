"""Data-parallel training on real ranks: ``mpiexec -n N python tests/mpi_worker.py ...``.

Each run is time-boxed, so a deadlock fails the test instead of hanging CI. Skipped where
mpiexec or mpi4py is missing (``pip install 'xpnet[mpi]'`` provides both).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

try:
    import mpi_worker
except ImportError:  # tests/ imported as a package
    from tests import mpi_worker

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "mpi_worker.py"
MPIEXEC = shutil.which(
    "mpiexec", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
)

pytestmark = pytest.mark.skipif(
    MPIEXEC is None or importlib.util.find_spec("mpi4py") is None,
    reason="needs mpiexec and mpi4py (pip install 'xpnet[mpi]')",
)


def _env():
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", XPNET_BACKEND="numpy")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


SHM = Path("/dev/shm")


def _mpich_segments():
    return {p.name for p in SHM.glob("mpich_shm_*")} if SHM.is_dir() else set()


def _mapped(names):
    found = set()
    for maps in Path("/proc").glob("[0-9]*/maps"):
        try:
            text = maps.read_text()
        except OSError:  # the process ended meanwhile, or is not ours to read
            continue
        found |= {name for name in names if name in text}
    return found


def _remove_abandoned_segments(before):
    """MPICH leaves its shared-memory segments in /dev/shm when a job is aborted (2 MiB a
    job, for good); remove the ones this job left once no live process maps them (the
    killed ranks may take a moment to go)."""
    left = _mpich_segments() - before
    deadline = time.monotonic() + 3.0
    while left:
        still = _mapped(left)
        for name in left - still:
            (SHM / name).unlink(missing_ok=True)
        if not still or time.monotonic() > deadline:
            return
        left = still
        time.sleep(0.1)


def mpirun(n, *args, timeout=120, check=True, env=None):
    cmd = [MPIEXEC, "-n", str(n), sys.executable, *map(str, args)]
    before = _mpich_segments()
    try:
        proc = subprocess.run(
            cmd,
            cwd=ROOT,
            env={**_env(), **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    finally:
        if not check:  # a job expected to end in an abort
            _remove_abandoned_segments(before)
    if check:
        assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def _ranks(out, n):
    return [dict(np.load(out / f"rank{r}.npz")) for r in range(n)]


def _assert_same_run(result, model, history, rtol):
    for i, w in enumerate(model.get_weights()):
        np.testing.assert_allclose(result[f"w{i}"], w, rtol=rtol, atol=rtol * 1e-3)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(result[f"h_{key}"], history.history[key], rtol=rtol)


def test_collectives_on_two_ranks(tmp_path):
    mpirun(2, WORKER, "allreduce", tmp_path)
    r0, r1 = _ranks(tmp_path, 2)
    for r in (r0, r1):
        np.testing.assert_array_equal(r["buf"], np.arange(5) * 3.0)  # 1x + 2x
        np.testing.assert_array_equal(r["b"], [0.0, 0.0, 0.0])  # rank 0's values
        np.testing.assert_array_equal(r["m"], [2.0, 1.0])
        assert bytes(r["data"].astype(np.uint8)) == b"rank0"


def test_ranks_and_local_ranks(tmp_path):
    mpirun(2, WORKER, "info", tmp_path)
    infos = sorted(tuple(r["info"]) for r in _ranks(tmp_path, 2))
    assert infos == [(0, 2, 0), (1, 2, 1)]  # one machine: local rank = rank


@pytest.mark.parametrize("n", [2, 3])
def test_data_parallel_fit_equals_one_process(tmp_path, n):
    # 101 rows at a global batch of 50: uneven parts (3 ranks) and a 1-row last batch that
    # leaves a rank empty; dropout on; each rank built from its own seed.
    mpirun(n, WORKER, "fit", tmp_path)
    results = _ranks(tmp_path, n)
    for other in results[1:]:  # bit-identical ranks
        assert results[0].keys() == other.keys()
        for key in results[0]:
            np.testing.assert_array_equal(results[0][key], other[key])
    _assert_shared_path(results, steps=9)  # 3 epochs of 3 global batches
    model = mpi_worker.make_model(100)
    history = mpi_worker.fit(model, None, epochs=3)
    _assert_same_run(results[0], model, history, rtol=1e-10)


def _assert_shared_path(results, steps):
    """One machine: every step's all-reduce went through the window (where /dev/shm has the
    room for it, else none did), and the gradients left it after the fit."""
    for r in results:
        assert int(r["shared_calls"]) == (steps if bool(r["dev_shm_room"]) else 0)
        assert bool(r["grad_left_window"]) and bool(r["window_free_again"])


def _fit_reference(epochs=3):
    model = mpi_worker.make_model(100)
    return model, mpi_worker.fit(model, None, epochs=epochs)


def test_shared_memory_allreduce_gives_mpi_allreduce_bits(tmp_path):
    mpirun(2, WORKER, "shared", tmp_path)
    ranks = _ranks(tmp_path, 2)
    for dtype in ("float32", "float64"):
        for size in (1, 7, 1000):
            assert bool(ranks[0][f"available_{dtype}_{size}"])
            for call in range(10):
                rng = [np.random.default_rng(100 * r + call) for r in (0, 1)]
                a, b = (g.normal(size=size).astype(dtype) for g in rng)
                for r in ranks:  # two ranks: a + b, the bits MPI_Allreduce gives
                    np.testing.assert_array_equal(r[f"shm_{dtype}_{size}_{call}"], a + b)
                    np.testing.assert_array_equal(r[f"mpi_{dtype}_{size}_{call}"], a + b)


def test_shared_memory_allreduce_on_three_ranks_sums_once_for_all(tmp_path):
    mpirun(3, WORKER, "shared", tmp_path)
    ranks = _ranks(tmp_path, 3)
    compared = 0
    for key in ranks[0]:
        if key.startswith("available_"):
            assert bool(ranks[0][key]), key
        if key.startswith("shm_"):
            for other in ranks[1:]:  # each chunk summed by one rank: the same bits everywhere
                np.testing.assert_array_equal(ranks[0][key], other[key])
            # Sums of three N(0, 1) numbers in another order: a few units in the last place.
            tol = 1e-6 if "float32" in key else 1e-14
            np.testing.assert_allclose(ranks[0][key], ranks[0]["mpi" + key[3:]], atol=tol)
            compared += 1
    assert compared == 2 * 3 * 10


def test_fit_through_mpi_allreduce_equals_the_shared_memory_one(tmp_path):
    (tmp_path / "shm").mkdir()
    (tmp_path / "mpi").mkdir()
    mpirun(2, WORKER, "fit", tmp_path / "shm")
    mpirun(2, WORKER, "fit", tmp_path / "mpi", env={"XPNET_SHARED_MEMORY_ALLREDUCE": "0"})
    shm, mpi = _ranks(tmp_path / "shm", 2), _ranks(tmp_path / "mpi", 2)
    _assert_shared_path(shm, steps=9)
    assert all(int(r["shared_calls"]) == 0 for r in mpi)
    for key in shm[0]:
        if key.startswith(("w", "h_")):  # two ranks: a + b either way, so the same bits
            np.testing.assert_array_equal(shm[0][key], mpi[0][key])


def test_ranks_that_disagree_on_the_shared_path_all_take_mpi(tmp_path):
    # Rank 0 has the path switched off, rank 1 not: neither may wait for the other in a
    # collective of another kind.
    cmd = [MPIEXEC, "-n", "1", "-env", "XPNET_SHARED_MEMORY_ALLREDUCE", "0"]
    cmd += [sys.executable, str(WORKER), "fit", str(tmp_path), ":", "-n", "1"]
    cmd += [sys.executable, str(WORKER), "fit", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    results = _ranks(tmp_path, 2)
    assert [int(r["shared_calls"]) for r in results] == [0, 0]
    model, history = _fit_reference()
    _assert_same_run(results[1], model, history, rtol=1e-10)


def test_a_gradient_rebound_on_one_rank_still_sums_in_the_window(tmp_path):
    mpirun(2, WORKER, "rebind", tmp_path)
    results = _ranks(tmp_path, 2)
    _assert_shared_path(results, steps=9)
    for key in results[0]:
        if key.startswith(("w", "h_")):
            np.testing.assert_array_equal(results[0][key], results[1][key])
    model, history = _fit_reference()
    _assert_same_run(results[0], model, history, rtol=1e-10)


def test_a_fit_of_another_size_frees_the_window_and_makes_its_own(tmp_path):
    mpirun(2, WORKER, "refit", tmp_path)
    results = _ranks(tmp_path, 2)
    for r in results:
        if bool(r["dev_shm_room"]):
            assert list(r["calls"]) == [3, 6, 15]  # 3 steps, 3 steps, then 3 epochs of 3
            assert bool(r["first_freed"])
    _assert_shared_path(results, steps=15)
    model, history = _fit_reference()
    _assert_same_run(results[0], model, history, rtol=1e-10)


@pytest.mark.parametrize("scenario", ["train_end_fails", "train_end_fails_after_divergence"])
def test_a_callback_failing_at_train_end_on_one_rank_ends_the_job(tmp_path, scenario):
    proc = mpirun(2, WORKER, scenario, tmp_path, timeout=60, check=False)
    assert proc.returncode != 0
    assert "injected failure in on_train_end on rank 0" in proc.stderr
    assert "rank 0 of 2 failed" in proc.stderr


def test_resume_with_another_number_of_ranks(tmp_path):
    mpirun(2, WORKER, "checkpoint", tmp_path, 2)  # epochs 1-2 on 2 ranks, written by rank 0
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) in (
        ["state.safetensors"],
        ["state.npz"],
    )
    mpirun(3, WORKER, "checkpoint", tmp_path, 4)  # epochs 3-4 on 3 ranks
    model = mpi_worker.make_model(100)
    X, y, Xv, yv = mpi_worker.problem()
    history = model.fit(
        X, y, epochs=4, batch_size=50, optimizer="adam", validation_data=(Xv, yv), seed=3
    )
    results = _ranks(tmp_path, 3)
    assert len(results[0]["h_loss"]) == 4
    _assert_same_run(results[0], model, history, rtol=1e-10)


def _assert_bit_identical(results):
    for other in results[1:]:
        assert results[0].keys() == other.keys()
        for key in results[0]:
            np.testing.assert_array_equal(results[0][key], other[key])


def _assert_same_buffers(result, model, rtol):
    buffers = mpi_worker.bn_buffers(model)
    assert sorted(k for k in result if k.startswith("b")) == sorted(buffers)
    for key, value in buffers.items():
        np.testing.assert_allclose(result[key], value, rtol=rtol)


@pytest.mark.parametrize("n", [2, 3])
def test_synchronised_batchnorm_equals_one_process(tmp_path, n):
    # Uneven parts, a last batch of 2 rows (an empty part on 3 ranks, 1-row parts on 2),
    # dropout on, each rank built from its own seed; running statistics compared too.
    mpirun(n, WORKER, "bn", tmp_path)
    results = _ranks(tmp_path, n)
    _assert_bit_identical(results)
    model = mpi_worker.make_bn_model(100)
    history = mpi_worker.fit_bn(model, None, epochs=3)
    _assert_same_run(results[0], model, history, rtol=1e-10)
    _assert_same_buffers(results[0], model, rtol=1e-10)
    # The statistics really moved (a per-rank BatchNorm would not have matched above).
    assert not np.allclose(results[0]["b0_running_mean"], 0.0)
    # The fit detaches the communicator again.
    assert all(getattr(layer, "_comm", None) is None for layer in model.layers)


def test_synchronised_batchnorm_resumes_with_another_number_of_ranks(tmp_path):
    mpirun(2, WORKER, "bn_checkpoint", tmp_path, 2)
    mpirun(3, WORKER, "bn_checkpoint", tmp_path, 4)
    results = _ranks(tmp_path, 3)
    _assert_bit_identical(results)
    model = mpi_worker.make_bn_model(100)
    history = mpi_worker.fit_bn(model, None, epochs=4, seed=3)
    assert len(results[0]["h_loss"]) == 4
    _assert_same_run(results[0], model, history, rtol=1e-10)
    _assert_same_buffers(results[0], model, rtol=1e-10)


def test_a_one_row_global_batch_under_batchnorm_ends_the_job(tmp_path):
    proc = mpirun(2, WORKER, "bn_one_row", tmp_path, timeout=60, check=False)
    assert proc.returncode != 0
    assert "BatchNorm needs more than one row" in proc.stderr
    assert "the global batch of the 2 ranks has 1 row(s)" in proc.stderr


def test_only_rank_0_prints_and_writes_callback_files(tmp_path):
    proc = mpirun(2, WORKER, "callbacks", tmp_path)
    assert proc.stdout.count("epoch 1/2") == 1 and proc.stdout.count("epoch 2/2") == 1
    names = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("rank"))
    assert names == ["log0.csv", "m0-1.npz", "m0-2.npz"]
    r0, r1 = _ranks(tmp_path, 2)
    np.testing.assert_array_equal(r0["h_loss"], r1["h_loss"])


def test_a_nan_on_one_rank_stops_every_rank_at_the_same_step(tmp_path):
    mpirun(2, WORKER, "nan", tmp_path, timeout=60)
    r0, r1 = _ranks(tmp_path, 2)
    assert "epoch 1, step 1" in str(r0["stopped"])
    assert str(r0["stopped"]) == str(r1["stopped"])
    _assert_shared_path([r0, r1], steps=1 + 3)  # the diverged fit's one step, then 3 steps


def test_an_exception_on_one_rank_ends_the_job_quickly(tmp_path):
    t0 = time.monotonic()
    proc = mpirun(2, WORKER, "fail", tmp_path, timeout=60, check=False)
    assert proc.returncode != 0
    assert time.monotonic() - t0 < 30
    assert "injected failure on rank 1" in proc.stderr
    assert "rank 1 of 2 failed" in proc.stderr


def test_ranks_given_different_data_fail_fast_instead_of_hanging(tmp_path):
    proc = mpirun(2, WORKER, "mismatch", tmp_path, timeout=60, check=False)
    assert proc.returncode != 0
    assert "disagree on the data" in proc.stderr


@pytest.mark.slow
def test_cli_distributed_reports_once_and_writes_world_size(tmp_path):
    pytest.importorskip("sklearn")
    out = tmp_path / "run.json"
    args = ["--dataset", "digits", "--epochs", "2", "--hidden", "32", "--seed", "1"]
    proc = mpirun(2, "-m", "xpnet", "train", "--distributed", *args, "--json", out)
    assert proc.stdout.count("test accuracy") == 1
    assert "data-parallel over 2 ranks" in proc.stdout
    summary = json.loads(out.read_text())
    assert summary["world_size"] == 2
    from xpnet.cli import main

    single = tmp_path / "single.json"
    assert main(["train", *args, "--quiet", "--json", str(single)]) == 0
    alone = json.loads(single.read_text())
    assert alone["world_size"] == 1
    # float32 on both sides: the same run up to float32 rounding of the gradient sums.
    np.testing.assert_allclose(summary["history"]["loss"], alone["history"]["loss"], rtol=1e-4)


def test_cli_error_on_the_ranks_ends_the_job_with_a_status(tmp_path):
    missing = tmp_path / "missing.csv"
    proc = mpirun(
        2, "-m", "xpnet", "train", "--distributed", "--dataset", f"csv:{missing}", check=False
    )
    assert proc.returncode != 0
    assert "xpnet: error:" in proc.stderr
    assert "failed; ending the job" in proc.stderr
