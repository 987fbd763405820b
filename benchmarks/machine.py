"""What a benchmark ran on: CPU model and flags, cores and threads, library versions.

    python benchmarks/machine.py            # prints the description
    python benchmarks/machine.py --peak     # and the measured matmul peak (float32, bf16),
                                            # and what the trainer's --dtype auto picks

Every speed benchmark prints `describe()` first, so a figure always comes with its machine:
absolute times belong to that machine only; ratios measured in one run travel better.
`matmul_peak` measures the FLOP/s a large matmul reaches on this machine, the
yardstick the training benchmark compares its achieved FLOP/s with.
"""

import importlib.metadata
import os
import platform

from keras_adahan import cli

# The CPU flags that decide which kernels run fast here (oneDNN, XNNPACK, PyTorch).
FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile",
         "amx_bf16", "amx_int8")
PACKAGES = ("tensorflow", "tensorflow-cpu", "keras", "numpy", "ai-edge-litert", "jax",
            "jaxlib", "torch")


def cpu():
    """`{"model", "flags", "logical_cpus", "usable_cpus"}` from /proc/cpuinfo (Linux)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model in ("", platform.machine()):
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {"model": model, "flags": [f for f in FLAGS if f in flags],
            "logical_cpus": os.cpu_count(), "usable_cpus": usable}


def versions():
    """Installed versions of the libraries that set the speed (absent ones left out)."""
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def gpu():
    """The name of the GPU the Keras backend computes on, or `None` where it uses the CPU
    (or its GPU library fails to start: describing the machine must not stop a benchmark)."""
    try:
        import keras

        backend = keras.backend.backend()  # KERAS_BACKEND, else keras.json.
        if backend == "jax":
            import jax

            gpus = [d for d in jax.devices() if d.platform == "gpu"]
            return gpus[0].device_kind if gpus else None
        if backend == "torch":
            import torch

            return torch.cuda.get_device_name() if torch.cuda.is_available() else None
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return (tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
                if gpus else None)
    except Exception:  # noqa: BLE001
        return None


def describe(threads=None):
    """The machine as a dict: cpu(), gpu(), versions(), the Keras backend and `threads`
    (what the benchmark set, e.g. `{"tensorflow": 2, "torch": 2}`)."""
    return {"cpu": cpu(), "gpu": gpu(), "versions": versions(),
            "keras_backend": os.environ.get("KERAS_BACKEND", "tensorflow"),
            "threads": threads or {}}


def format_machine(description):
    """One paragraph for the top of a benchmark's output."""
    c = description["cpu"]
    libraries = ", ".join(f"{k} {v}" for k, v in description["versions"].items())
    threads = ", ".join(f"{k} {v}" for k, v in description["threads"].items())
    return (f"machine: {c['model']}, {c['usable_cpus']} usable of {c['logical_cpus']} logical "
            f"CPUs, flags {' '.join(c['flags']) or 'none of ' + '/'.join(FLAGS)}"
            + (f"; GPU {description['gpu']}" if description.get("gpu") else "") + "\n"
            f"  {libraries}; Keras backend {description['keras_backend']}"
            + (f"; threads: {threads}" if threads else ""))


def matmul_peak(dtype="float32"):
    """FLOP/s of a 2048 x 2048 matmul in `dtype`, best of the calls in 2 s
    (`keras_adahan.compute.matmul_flops`; set the threads before calling)."""
    from keras_adahan import compute

    return compute.matmul_flops(dtype, size=2048, seconds=2.0)


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peak", action="store_true",
                        help="also measure the float32 and bfloat16 matmul peak")
    args = parser.parse_args(argv)
    print(format_machine(describe()))
    if args.peak:
        for dtype in ("float32", "bfloat16"):
            print(f"  matmul peak {dtype}: {matmul_peak(dtype) / 1e9:.0f} GFLOP/s")
        from keras_adahan import compute

        chosen, speedup = compute.auto_dtype()
        print(f"  --dtype auto: {chosen} (bfloat16 matmul {speedup:.2f}x float32's, "
              "as the trainer times it)")


if __name__ == "__main__":
    cli.run(main)
