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
    parser.add_argument("--output_dir", required=True, type=cli.folder_path,
                        help="folder to create (must not exist or be empty, see --overwrite)")
    parser.add_argument("--quantizations", default=",".join(tflite.QUANTIZATIONS),
                        help="comma-separated .tflite variants to write")
    parser.add_argument("--calibration_steps", type=cli.positive_int, default=None,
                        help="training images (each with all its questions) the int8 model "
                             "is calibrated on (int8 only); None: 100")
    parser.add_argument("--data_dir", default=None, type=cli.folder_path,
                        help="TFDS folder of the run's dataset. Default: the run's")
    parser.add_argument("--skip_parity", action="store_true",
                        help="do not compare the artifacts with Keras on the test split")
    parser.add_argument("--max_parity_questions", type=cli.positive_int, default=None,
                        help="compare on the first N test questions only. Default: all")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a non-empty --output_dir")
    args = parser.parse_args(argv)
    # Flags that would do nothing are refused, as the trainer does.
    args.quantizations = [q.strip() for q in args.quantizations.split(",") if q.strip()]
    twice = sorted({q for q in args.quantizations if args.quantizations.count(q) > 1})
    if twice:
        parser.error(f"--quantizations names {', '.join(twice)} more than once")
    if args.calibration_steps is not None and "int8" not in args.quantizations:
        parser.error("--calibration_steps calibrates the int8 model; --quantizations has no "
                     "int8")
    if args.max_parity_questions is not None and args.skip_parity:
        parser.error("--max_parity_questions and --skip_parity: pass one of them")
    args.calibration_steps = args.calibration_steps or 100
    return args


def main(argv=None):
    args = parse_args(argv)
    from .exporter import export
    from .exporter import format_report

    try:
        report = export(
            args.model, args.output_dir, quantizations=tuple(args.quantizations),
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
