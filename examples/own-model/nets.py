"""Task 5 done by hand: ResNet-110 for CIFAR-10 (He et al. 2015, section 4.2).

depth = 6n + 2: a 3x3 convolution with 16 filters, three stages of n basic blocks with 16, 32 and
64 filters, shortcuts of option A (subsample, pad the new channels with zeros), global average
pooling and a fully connected layer. labreport passes num_classes, norm and dropout.
"""

import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride, norm):
        super().__init__()
        bias = norm == "none"  # without BatchNorm a convolution needs its own bias
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=bias)
        self.bn1 = nn.BatchNorm2d(c_out) if norm == "batch" else nn.Identity()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=bias)
        self.bn2 = nn.BatchNorm2d(c_out) if norm == "batch" else nn.Identity()
        self.pad = c_out - c_in  # option A: the shortcut subsamples and pads the new channels

    def shortcut(self, x):
        if self.pad == 0:
            return x
        x = x[:, :, ::2, ::2]
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))  # F(x) + x


class ResNet(nn.Module):
    def __init__(self, depth=110, num_classes=10, norm="batch", dropout=0.0):
        super().__init__()
        n = (depth - 2) // 6
        self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=norm == "none")
        self.bn = nn.BatchNorm2d(16) if norm == "batch" else nn.Identity()
        blocks, c_in = [], 16
        for c_out in (16, 32, 64):
            for i in range(n):
                stride = 2 if i == 0 and c_out != 16 else 1
                blocks.append(BasicBlock(c_in, c_out, stride, norm))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        x = self.blocks(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(self.drop(x))
