"""The PyTorch reference (PyTorch-AdaHAN), restated in PyTorch.

Written from the layer-by-layer description (docs: /work/shared/REFERENCE.md, "The PyTorch
reference"), then checked against the source (models.py of gnouhp/PyTorch-AdaHAN, class
`AdaHAN`): the same layers in the same order (ReLU after each pooling, none after the 1x1
conv), the same module names and parameter creation order, so the same `state_dict` keys
and shapes and, under one `torch.manual_seed`, the same initial weights; and the same
outputs on tests/fixtures/reference_outputs.npz. `python -m keras_adahan.convert_reference`
reads either `state_dict`:

    encoder_cnn.conv{1,2,3}.{weight,bias}   Conv2d(5x5, 8 channels, padding 2)
    encoder_rnn.embedding.weight            Embedding(num_words, 8)
    encoder_rnn.gru.{weight,bias}_{ih,hh}_l0  GRU(8, 8)
    conv1by1.{weight,bias}                  Conv2d(8 -> 2, 1x1)
    fc1.{weight,bias}                       Linear(1024 -> num_answers)

Like the reference it takes one example at a time: an image `(1, 3, 256, 256)` float in
0..1, channels RGB (main.py: torchvision's `ToTensor` of its 256x256 RGB JPEGs) and a
question as a 1-D LongTensor of word ids (main.py's `word2idx`, from 0, in the question's
order, not reversed, no padding), read by the GRU (not batch_first) one word a call from a
zero state. One difference: the reference's `forward` returns `(log_probs, mask)`; this one
also returns the presences it computes.

API (for side-by-side measurements, e.g. benchmarks/train_throughput.py):

    model = build_reference(num_words=12, num_answers=4, variant="han")  # or "adahan"
    model.to("cuda")            # optional: the loops below then run on the GPU
    log_probs, presence, mask = model(image, question)  # (1, A), (1024,), (1024,)
    train_steps(model, 100)     # the reference's loop: Adam 5e-4, NLL, one example a step
    infer(model, 100)           # forward passes under torch.no_grad()
    image, question, answer = example(num_words, num_answers)  # a random example

(main.py's loop takes a random training image and makes one step for each of its 3
questions, of 9, 11 and 6 words; `example` draws 10 random words.)

Needs torch (`pip install torch==2.13.0` here; not a dependency of keras-adahan).
"""

import torch
from torch import nn
from torch.nn import functional as F

HIDDEN = 8  # Channels of the image encoder = embedding and GRU size.
GRID = 32  # 256 px / 2 / 2 / 2.
VARIANTS = ("han", "adahan")


class EncoderCNN(nn.Module):
    """3 x [conv 5x5 pad 2 -> AvgPool2d(3, stride 2, padding 1) -> ReLU]: 256 -> 32."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, HIDDEN, kernel_size=5, padding=2)
        self.conv2 = nn.Conv2d(HIDDEN, HIDDEN, kernel_size=5, padding=2)
        self.conv3 = nn.Conv2d(HIDDEN, HIDDEN, kernel_size=5, padding=2)
        # count_include_pad=True is PyTorch's default: border windows divide by 9.
        self.pool = nn.AvgPool2d(kernel_size=3, stride=2, padding=1)

    def forward(self, image):
        x = F.relu(self.pool(self.conv1(image)))  # (1, 8, 128, 128)
        x = F.relu(self.pool(self.conv2(x)))  # (1, 8, 64, 64)
        return F.relu(self.pool(self.conv3(x)))  # (1, 8, 32, 32)


class EncoderRNN(nn.Module):
    """Embedding + GRU, fed one word at a time from a zero state; returns the last state."""

    def __init__(self, num_words):
        super().__init__()
        self.embedding = nn.Embedding(num_words, HIDDEN)
        self.gru = nn.GRU(HIDDEN, HIDDEN)

    def forward(self, question):
        hidden = torch.zeros(1, 1, HIDDEN, device=question.device)
        for word in question:
            _, hidden = self.gru(self.embedding(word).view(1, 1, -1), hidden)
        return hidden  # (1, 1, 8)


class ReferenceAdaHAN(nn.Module):
    """HAN (top-2 cells) or AdaHAN (softmax(presence) >= 1/1024) over the 32x32 grid.

    Args:
        num_words: int. Vocabulary size (the reference's word ids are 0..num_words-1).
        num_answers: int. Answer classes.
        variant: "han" or "adahan". Defaults to "han".
        k: int. Cells HAN keeps. Defaults to 2.

    Call arguments:
        image: float tensor `(1, 3, 256, 256)`, 0..1.
        question: LongTensor `(num_question_words,)`.

    Returns:
        `(log_probs (1, num_answers), presence (1024,), mask (1024,))`; cells row-major.
    """

    def __init__(self, num_words, num_answers, variant="han", k=2):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"`variant` must be one of {VARIANTS}, received {variant!r}")
        self.variant, self.k = variant, k
        self.encoder_cnn = EncoderCNN()
        self.encoder_rnn = EncoderRNN(num_words)
        self.conv1by1 = nn.Conv2d(HIDDEN, 2, kernel_size=1)
        self.fc1 = nn.Linear(GRID * GRID, num_answers)

    def forward(self, image, question):
        cells = self.encoder_cnn(image)  # (1, 8, 32, 32)
        # The question vector ADDED to every cell.
        fused = cells + self.encoder_rnn(question).view(1, HIDDEN, 1, 1)
        representation = self.conv1by1(fused).squeeze(0)  # (2, 32, 32)
        presence = torch.sum(representation**2, dim=0).view(-1)  # (1024,) squared L2
        values = torch.sum(representation, dim=0).view(-1)  # (1024,) the 2 channels summed
        if self.variant == "adahan":
            mask = (F.softmax(presence, dim=0) >= 1.0 / presence.numel()).float()
        else:
            mask = torch.zeros_like(presence)
            mask[torch.topk(presence, k=self.k)[1]] = 1.0
        log_probs = F.log_softmax(self.fc1(values * mask).unsqueeze(0), dim=1)
        return log_probs, presence, mask


def build_reference(num_words, num_answers, variant="han"):
    """The reference model (HAN k=2, or AdaHAN), with PyTorch's default initialization."""
    return ReferenceAdaHAN(num_words, num_answers, variant=variant)


def example(num_words, num_answers, length=10, generator=None):
    """A random `(image (1, 3, 256, 256), question (length,), answer (1,))` example."""
    image = torch.rand(1, 3, 256, 256, generator=generator)
    question = torch.randint(num_words, (length,), generator=generator)
    answer = torch.randint(num_answers, (1,), generator=generator)
    return image, question, answer


def _cached_example(model):
    # One example per model, made once on the model's device: the timed loops measure the
    # model, not torch.rand or copies to a GPU.
    device = model.fc1.weight.device
    if getattr(model, "example", (None,))[0] is None or model.example[0].device != device:
        model.example = tuple(t.to(device) for t in example(
            model.encoder_rnn.embedding.num_embeddings, model.fc1.out_features))
    return model.example


def train_steps(model, steps, learning_rate=5e-4):
    """The reference's training loop for `steps` steps: one example a step, NLL on the
    log-probabilities, Adam (lr 5e-4; its state kept on the model across calls). Returns
    the last loss."""
    if not hasattr(model, "optimizer"):
        model.optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    optimizer = model.optimizer
    criterion = nn.NLLLoss()
    image, question, answer = _cached_example(model)
    model.train()
    for _ in range(steps):
        log_probs, _, _ = model(image, question)
        loss = criterion(log_probs, answer)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return loss.item()


@torch.no_grad()
def infer(model, steps):
    """`steps` forward passes of one example each; returns the last answer id."""
    image, question, _ = _cached_example(model)
    model.eval()
    for _ in range(steps):
        log_probs, _, _ = model(image, question)
    return int(log_probs.argmax())
