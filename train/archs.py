"""Architectures by name, as plain data: importing this costs nothing (no Keras), so a command
can reject an unknown --arch before paying for the TensorFlow import."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    filters: int  # output channels of every block in the stage
    blocks: int  # residual blocks
    dropout: float  # after the stage
    pool: bool = False  # 2x2 max-pool after the stage (the notebook's way down)
    stride: int = 1  # stride of the stage's first block (the edge models' cheaper way down)


@dataclass(frozen=True)
class ArchSpec:
    stem: int  # channels of the 3x3 stem convolution
    stages: tuple[Stage, ...]
    head: tuple[tuple[int, float], ...]  # (units, dropout) of each hidden Dense layer
    head_dropout: float = 0.0  # dropout right after global pooling
    l2: float = 1e-3  # weight decay on the blocks' 3x3 kernels
    summary: str = ""


ARCHS: dict[str, ArchSpec] = {
    # The notebook's model, exactly: 12,264,458 parameters, ~595M MACs.
    "miniresnet": ArchSpec(
        stem=32,
        stages=(
            Stage(32, 2, 0.1, pool=True),
            Stage(64, 2, 0.2, pool=True),
            Stage(128, 2, 0.3),
            Stage(256, 2, 0.4),
            Stage(512, 2, 0.5),
        ),
        head=((1024, 0.5), (512, 0.4)),
        summary="the notebook's Mini-ResNet (32..512 filters, 2 blocks a stage)",
    ),
    # Raspberry Pi variants: strided blocks instead of max-pool, no big dense head.
    "edge-s": ArchSpec(
        stem=16,
        stages=(
            Stage(16, 1, 0.0),
            Stage(32, 1, 0.1, stride=2),
            Stage(64, 1, 0.2, stride=2),
        ),
        head=(),
        head_dropout=0.3,
        l2=1e-4,
        summary="16/32/64 filters, 1 block a stage, strided",
    ),
    "edge-m": ArchSpec(
        stem=32,
        stages=(
            Stage(32, 1, 0.0),
            Stage(64, 1, 0.1, stride=2),
            Stage(128, 2, 0.2, stride=2),
        ),
        head=(),
        head_dropout=0.3,
        l2=1e-4,
        summary="32/64/128 filters, 1-1-2 blocks, strided",
    ),
    # CIFAR-style ResNets (He et al. 2016, depth 6n+2) adapted to 28x28: three stages of n
    # blocks at 16/32/64 filters on 28/14/7 pixels, no dropout, no hidden dense layer; the
    # Random Erasing paper's Fashion-MNIST models. 1x1 projections where the shape changes.
    "resnet20": ArchSpec(
        stem=16,
        stages=(Stage(16, 3, 0.0), Stage(32, 3, 0.0, stride=2), Stage(64, 3, 0.0, stride=2)),
        head=(),
        l2=0.0,
        summary="CIFAR ResNet-20: 16/32/64 filters, 3 blocks a stage",
    ),
    "resnet32": ArchSpec(
        stem=16,
        stages=(Stage(16, 5, 0.0), Stage(32, 5, 0.0, stride=2), Stage(64, 5, 0.0, stride=2)),
        head=(),
        l2=0.0,
        summary="CIFAR ResNet-32: 16/32/64 filters, 5 blocks a stage",
    ),
    # For tests and smoke runs only: trains in seconds, accuracy is not its point.
    "tiny": ArchSpec(
        stem=8,
        stages=(Stage(8, 1, 0.0, stride=2), Stage(16, 1, 0.0, stride=2)),
        head=(),
        l2=0.0,
        summary="8/16 filters, for tests",
    ),
}
