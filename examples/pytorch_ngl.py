#!/usr/bin/env python
"""Train a small CNN with the Next Generation Loss (NGL) in plain PyTorch, and compare it with CE.

NGL (Akhmedova & Koerber, arXiv 2404.12948) is a drop-in replacement for nn.CrossEntropyLoss:
it takes the model's logits and integer class labels,

    criterion = ngl.losses.get_loss("ngl")   # instead of nn.CrossEntropyLoss()
    loss = criterion(model(images), labels)

and computes mean over batch x classes of exp(2.4092 - p * (1 + y)) - cos(cos(sin(p))), with
p = softmax(logits) and y the one-hot labels. A loss found by `ngl search` loads the same way:

    criterion = ngl.losses.from_expression("runs/search/hall_of_fame/00.json")

Usage:
    python examples/pytorch_ngl.py                          # scikit-learn's digits, no download
    python examples/pytorch_ngl.py --data-dir ~/my_images   # one sub-folder of images per class
    python examples/pytorch_ngl.py --loss runs/search/hall_of_fame/00.json
"""
import argparse
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset, random_split

import ngl


class Net(nn.Module):
    def __init__(self, in_channels, num_classes):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(64 * 4 * 4, 128)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = F.adaptive_avg_pool2d(x, 4)      # any image size -> 4x4
        x = self.dropout1(torch.flatten(x, 1))
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        return self.fc2(x)                   # logits, as nn.CrossEntropyLoss expects


def digits_dataset():
    """scikit-learn's 1,797 handwritten digits (8x8, 10 classes), shipped inside its wheel."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    images = torch.tensor(x, dtype=torch.float32).view(-1, 1, 8, 8) / 16.0
    return TensorDataset((images - 0.5) / 0.5, torch.tensor(y)), 1, 10


def folder_dataset(root, image_size):
    """root/<class name>/<image files>, read with torchvision's ImageFolder."""
    from torchvision import datasets, transforms

    transform = transforms.Compose([
        transforms.Resize((image_size, image_size)),
        transforms.ToTensor(),
        transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    ])
    dataset = datasets.ImageFolder(root, transform=transform)
    return dataset, 3, len(dataset.classes)


def make_criterion(name):
    if name.endswith(".json"):
        return ngl.losses.from_expression(name)   # a loss found by `ngl search`
    if name == "ce":
        return nn.CrossEntropyLoss()
    return ngl.losses.get_loss(name)              # "ngl", "focal", "sce", ...


def train(model, device, loader, criterion, optimizer):
    model.train()
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        optimizer.zero_grad()
        loss = criterion(model(images), labels)
        loss.backward()
        optimizer.step()


def evaluate(model, device, loader):
    model.eval()
    correct = 0
    with torch.no_grad():
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            correct += (model(images).argmax(1) == labels).sum().item()
    return correct / len(loader.dataset)


def run(loss_name, args, train_set, test_set, in_channels, num_classes, device):
    """Train one model from the same seed with one loss; return (test accuracy, seconds)."""
    torch.manual_seed(args.seed)                  # same weights and batch order for every loss
    model = Net(in_channels, num_classes).to(device)
    criterion = make_criterion(loss_name).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True)
    test_loader = DataLoader(test_set, batch_size=256)
    start = time.perf_counter()
    for _ in range(args.epochs):
        train(model, device, train_loader, criterion, optimizer)
    return evaluate(model, device, test_loader), time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description="NGL vs cross entropy in a plain PyTorch loop")
    parser.add_argument("--data-dir", help="folder with one sub-folder of images per class "
                                           "(default: scikit-learn's embedded digits)")
    parser.add_argument("--image-size", type=int, default=32, help="resize folder images to this (32)")
    parser.add_argument("--loss", default="ngl",
                        help="'ngl', 'ce', another ngl loss name, or a search's hall_of_fame/NN.json")
    parser.add_argument("--epochs", type=int, default=10, help="epochs (10)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size (64)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (1e-3)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument("--no-accel", action="store_true", help="train on the CPU even if a GPU is there")
    args = parser.parse_args()

    try:
        make_criterion(args.loss)                     # a bad --loss fails before any training
    except (OSError, ValueError, KeyError) as e:
        sys.exit(f"error: --loss {args.loss}: {e.args[0]}")

    use_accel = not args.no_accel and torch.accelerator.is_available()
    device = torch.accelerator.current_accelerator() if use_accel else torch.device("cpu")

    if args.data_dir is None:
        dataset, in_channels, num_classes = digits_dataset()
    elif not os.path.isdir(args.data_dir):
        sys.exit(f"error: --data-dir {args.data_dir}: no such folder (expected DIR/<class>/<image>)")
    else:
        try:
            dataset, in_channels, num_classes = folder_dataset(args.data_dir, args.image_size)
        except FileNotFoundError as e:            # no class folders, or no images in them
            sys.exit(f"error: --data-dir {args.data_dir}: {e}")
    n_test = len(dataset) // 5
    train_set, test_set = random_split(dataset, [len(dataset) - n_test, n_test],
                                       generator=torch.Generator().manual_seed(args.seed))
    print(f"{len(train_set)} train / {len(test_set)} test images, {num_classes} classes, "
          f"{args.epochs} epochs, seed {args.seed}, device {device}")

    losses = [args.loss] if args.loss == "ce" else [args.loss, "ce"]
    print(f"{'loss':<40} {'test accuracy':>13} {'time':>8}")
    for name in losses:
        accuracy, seconds = run(name, args, train_set, test_set, in_channels, num_classes, device)
        print(f"{name:<40} {100 * accuracy:12.1f}% {seconds:7.1f}s", flush=True)


if __name__ == "__main__":
    main()
