"""Recognition with noisy (NSNN) and deterministic (DSNN) spiking networks: paper Tables 1-4, Figs. 3, 4, 8, 9.

Architectures (:data:`ARCHITECTURES`: CIFARNet, ResNet-18, ResNet-19, VGGSNN, 7B-Net and a small
digits network) built from :class:`~neurocode.neurons.NoisyLIF` or :class:`~neurocode.neurons.LIF`
by one switch (``model="nsnn"`` / ``"dsnn"``); training methods STBP, tdBN and TET
(:data:`METHODS`) with Adam and cosine annealing, the paper's Table 4 settings as :data:`PRESETS`;
datasets (:func:`load_dataset`): scikit-learn's bundled digits (offline), CIFAR-10/100, DVS-Gesture
and CIFAR10-DVS; robustness to FGSM, direct optimisation, spike-state flips and EventDrop
(:func:`robustness_curves`); the Fig. 4 coding analysis on the final spiking layer
(:func:`classifier_coding_analysis`).

Quick start (about two minutes on one CPU thread, training ~40 s, the rest robustness and coding)::

    from neurocode.recognition import classify
    result = classify("digits", model="nsnn", out="runs/digits-nsnn")
    result.metrics["test_accuracy"], result.metrics["robustness"]["flip"]

The same from the shell: ``neurocode classify --dataset digits --model nsnn --out runs/digits-nsnn``.
"""

from importlib import import_module

_MODULES = {
    "architectures": ("ARCHITECTURES", "ArchInfo", "SpikingClassifier", "build_classifier", "parameter_count"),
    "coding": ("classifier_coding_analysis", "plot_two_trials", "two_trials"),
    "data": ("DATASETS", "ClassificationData", "drop_frame_events", "event_drop", "events_to_frames", "load_dataset",
             "load_digits_data"),
    "figures": ("plot_learning_curves", "plot_noise_level", "plot_robustness"),
    "layers": ("NeuronSpec", "SeqToANN", "TdBN", "noise_source"),
    "methods": ("METHODS", "Method", "rate_loss", "tet_loss"),
    "presets": ("PRESETS", "TrainPreset", "find_preset", "get_preset"),
    "robustness": ("direct_optimization", "evaluate", "fgsm", "robustness_curves"),
    "training": ("ClassifyConfig", "ClassifyResult", "classify", "load_run", "make_config", "train_classifier"),
}
_LAZY = {name: module for module, names in _MODULES.items() for name in names}

__all__ = sorted(_LAZY)


def __getattr__(name):
    # names load on first use: `neurocode classify --help` (neurocode.recognition.cli) needs no torch
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'neurocode.recognition' has no attribute {name!r}") from None
    value = getattr(import_module(f"neurocode.recognition.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
