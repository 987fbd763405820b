"""`python -m keras_adahan.export RUN_DIR_OR_MODEL.keras --output_dir DIR`."""


import argparse

from keras_adahan import cli

from . import tflite


def parse_args(argv=None):
    parser = cli.ArgumentParser(
        prog="python -m keras_adahan.export",
        description="Export a trained keras-adahan run: SavedModel, TFLite in float32, "
                    "float16, dynamic-range and int8 (builtin ops only), labels, and a "
                    "report of sizes, ops and parity with Keras on the test split.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("model", help="a run folder of keras_adahan.train, or its model.keras")
    parser.add_argument("--output_dir", required=True,
                        help="folder to create (must not exist or be empty, see --overwrite)")
    parser.add_argument("--quantizations", default=",".join(tflite.QUANTIZATIONS),
                        help="comma-separated .tflite variants to write")
    parser.add_argument("--calibration_steps", type=int, default=100,
                        help="training images (each with all its questions) the int8 model "
                             "is calibrated on")
    parser.add_argument("--data_dir", default=None,
                        help="TFDS folder of the run's dataset. Default: the run's")
    parser.add_argument("--skip_parity", action="store_true",
                        help="do not compare the artifacts with Keras on the test split")
    parser.add_argument("--max_parity_questions", type=int, default=None,
                        help="compare on the first N test questions only. Default: all")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a non-empty --output_dir")
    args = parser.parse_args(argv)
    if args.calibration_steps < 1:
        parser.error(f"--calibration_steps must be >= 1, received {args.calibration_steps}")
    if args.max_parity_questions is not None and args.max_parity_questions < 1:
        parser.error("--max_parity_questions must be >= 1, received "
                     f"{args.max_parity_questions}")
    return args


def main(argv=None):
    args = parse_args(argv)
    from .exporter import export
    from .exporter import format_report

    quantizations = tuple(q.strip() for q in args.quantizations.split(",") if q.strip())
    try:
        report = export(
            args.model, args.output_dir, quantizations=quantizations,
            calibration_steps=args.calibration_steps, data_dir=args.data_dir,
            parity=not args.skip_parity, max_parity_questions=args.max_parity_questions,
            overwrite=args.overwrite, log=lambda message: print(message, flush=True),
        )
    except tflite.ExportError as error:
        raise cli.UserError(str(error)) from None
    print()
    print(format_report(report))
    return report


if __name__ == "__main__":
    cli.run(main)
