"""A DARTS supernet and architect organised the way the paper's published code is.

For benchmarking only: `darts_step.py` times it against `archsearch.supernet` and checks that
both compute the same numbers. It is written from the description of that code's structure,
not copied from it, and deliberately keeps its costs:

* one `MixedOp` per edge holds *all* candidate ops as modules and computes Σ_o w_o · o(x),
  including `none` (zeros times its weight);
* every conv op applies its own leading ReLU; every pooling op has its own non-affine BN
  (tracking running statistics), so pooling of a node is recomputed on each edge leaving it;
* NCHW memory format, depthwise convolutions as plain grouped `nn.Conv2d`;
* α are plain tensors held by the network object, not registered parameters;
* first order: `loss.backward()` over the whole model (weight gradients included) on the
  validation batch, Adam on α, then the weight step;
* second order: the virtual step w' = w − ξ(μ·buf + ∇w L_train + λw) is taken on a deep copy
  of the model, the validation loss is back-propagated through that copy, and the
  Hessian-vector product uses central differences by shifting the real model's weights in
  place (w += εv; grad; w −= 2εv; grad; w += εv), ε = 0.01 / ‖v‖.

The op semantics are those of `archsearch.ops` (ReLU-conv-BN order, separable conv applied
twice, dilation 2 for dil convs, average pooling without padded zeros, factorized reduce for
a stride-2 skip), and the weights are the same 1,930,618 parameters in the same order as
`DartsSupernet.weight_parameters()` (the non-affine BNs have none).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archsearch.ops import DARTS_OPS

Batch = tuple[Tensor, Tensor]


class ReLUConvBN(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int,
                 affine: bool = True) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine))

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class DilConv(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int,
                 dilation: int, affine: bool = True) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, stride=stride, padding=padding, dilation=dilation,
                      groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine))

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class SepConv(nn.Module):
    """Two depthwise-separable halves; the stride is in the first."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int,
                 affine: bool = True) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, stride=stride, padding=padding, groups=c_in,
                      bias=False),
            nn.Conv2d(c_in, c_in, 1, bias=False),
            nn.BatchNorm2d(c_in, affine=affine),
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, stride=1, padding=padding, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine))

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class Zero(nn.Module):
    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, ::self.stride, ::self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    def __init__(self, c_in: int, c_out: int, affine: bool = True) -> None:
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, padding=0, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, padding=0, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


def make_op(name: str, c: int, stride: int) -> nn.Module:
    """One candidate op of a supernet edge (all non-affine, as in the search)."""
    if name == "none":
        return Zero(stride)
    if name == "max_pool_3x3":
        return nn.Sequential(nn.MaxPool2d(3, stride=stride, padding=1),
                             nn.BatchNorm2d(c, affine=False))
    if name == "avg_pool_3x3":
        return nn.Sequential(nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False),
                             nn.BatchNorm2d(c, affine=False))
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine=False)
    if name == "sep_conv_3x3":
        return SepConv(c, c, 3, stride, 1, affine=False)
    if name == "sep_conv_5x5":
        return SepConv(c, c, 5, stride, 2, affine=False)
    if name == "dil_conv_3x3":
        return DilConv(c, c, 3, stride, 2, 2, affine=False)
    if name == "dil_conv_5x5":
        return DilConv(c, c, 5, stride, 4, 2, affine=False)
    raise KeyError(f"unknown op {name!r}")


class MixedOp(nn.Module):
    def __init__(self, c: int, stride: int, ops: Sequence[str]) -> None:
        super().__init__()
        self.ops = nn.ModuleList(make_op(name, c, stride) for name in ops)

    def forward(self, x: Tensor, weights: Tensor) -> Tensor:
        return sum(w * op(x) for w, op in zip(weights, self.ops, strict=True))


class Cell(nn.Module):
    def __init__(self, nodes: int, c_prev_prev: int, c_prev: int, c: int, reduction: bool,
                 reduction_prev: bool, ops: Sequence[str]) -> None:
        super().__init__()
        self.reduction = reduction
        self.nodes = nodes
        self.preprocess0 = (FactorizedReduce(c_prev_prev, c, affine=False) if reduction_prev
                            else ReLUConvBN(c_prev_prev, c, 1, 1, 0, affine=False))
        self.preprocess1 = ReLUConvBN(c_prev, c, 1, 1, 0, affine=False)
        self.edges = nn.ModuleList()
        for i in range(nodes):
            for j in range(2 + i):
                stride = 2 if reduction and j < 2 else 1
                self.edges.append(MixedOp(c, stride, ops))

    def forward(self, s0: Tensor, s1: Tensor, weights: Tensor) -> Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for _ in range(self.nodes):
            node = sum(self.edges[offset + j](h, weights[offset + j])
                       for j, h in enumerate(states))
            offset += len(states)
            states.append(node)
        return torch.cat(states[-self.nodes:], dim=1)


class ReferenceNetwork(nn.Module):
    """The search network; α live in `alphas_normal` / `alphas_reduce` (plain tensors)."""

    def __init__(self, channels: int = 16, num_classes: int = 10, layers: int = 8,
                 nodes: int = 4, stem_multiplier: int = 3, in_channels: int = 3,
                 ops: Sequence[str] = DARTS_OPS) -> None:
        super().__init__()
        c_stem = stem_multiplier * channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_stem, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(c_stem))
        c_pp, c_p, c = c_stem, c_stem, channels
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                c *= 2
            self.cells.append(Cell(nodes, c_pp, c_p, c, reduction, reduction_prev, ops))
            reduction_prev = reduction
            c_pp, c_p = c_p, nodes * c
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)
        edges = sum(2 + i for i in range(nodes))
        self.alphas_normal = (1e-3 * torch.randn(edges, len(ops))).requires_grad_()
        self.alphas_reduce = (1e-3 * torch.randn(edges, len(ops))).requires_grad_()

    def arch_parameters(self) -> list[Tensor]:
        return [self.alphas_normal, self.alphas_reduce]

    def set_alphas(self, normal: Tensor, reduce: Tensor) -> None:
        """Replace α by copies of the given tensors (new leaves that require grad)."""
        self.alphas_normal = normal.detach().clone().requires_grad_()
        self.alphas_reduce = reduce.detach().clone().requires_grad_()

    def forward(self, x: Tensor) -> Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            alphas = self.alphas_reduce if cell.reduction else self.alphas_normal
            s0, s1 = s1, cell(s0, s1, F.softmax(alphas, dim=-1))
        return self.classifier(self.global_pooling(s1).flatten(1))


def cross_entropy(model: nn.Module, batch: Batch) -> Tensor:
    x, y = batch
    return F.cross_entropy(model(x), y)


class ReferenceArchitect:
    """Algorithm 1 in the published code's style: α step (first or second order), w step.

    Args:
        model: the network.
        lr, momentum, weight_decay: SGD on the weights; lr is also ξ of the virtual step.
        arch_lr, arch_betas, arch_weight_decay: Adam on α.
        grad_clip: max global norm of the weight gradient.
    """

    def __init__(self, model: ReferenceNetwork, *, lr: float, momentum: float,
                 weight_decay: float, arch_lr: float, arch_betas: tuple[float, float],
                 arch_weight_decay: float, grad_clip: float) -> None:
        self.model = model
        self.grad_clip = grad_clip
        self.network_optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum,
                                                 weight_decay=weight_decay)
        self.arch_optimizer = torch.optim.Adam(model.arch_parameters(), lr=arch_lr,
                                               betas=arch_betas, weight_decay=arch_weight_decay)

    # -- architecture gradients --------------------------------------------------------------

    def first_order_grads(self, val: Batch) -> list[Tensor]:
        """∇α L_val(w, α), by a full backward pass (weights' gradients included)."""
        for a in self.model.arch_parameters():
            a.grad = None
        cross_entropy(self.model, val).backward()
        return [a.grad for a in self.model.arch_parameters()]

    def second_order_grads(self, train: Batch, val: Batch) -> list[Tensor]:
        """Eq. 7 with the finite-difference Hessian-vector product of eq. 8."""
        for a in self.model.arch_parameters():
            a.grad = None  # (else `deepcopy` would hand the copy's α a stale gradient)
        eta = self.network_optimizer.param_groups[0]["lr"]
        unrolled = self._unrolled_model(train, eta)
        cross_entropy(unrolled, val).backward()
        dalpha = [a.grad for a in unrolled.arch_parameters()]
        vector = [p.grad for p in unrolled.parameters()]
        implicit = self._hessian_vector_product(vector, train)
        for g, ig in zip(dalpha, implicit, strict=True):
            g.sub_(eta * ig)
        for a, g in zip(self.model.arch_parameters(), dalpha, strict=True):
            a.grad = g.clone()
        # `unrolled` (weights and gradients) stays alive until here, as in the original.
        return [a.grad for a in self.model.arch_parameters()]

    def _unrolled_model(self, train: Batch, eta: float) -> ReferenceNetwork:
        params = list(self.model.parameters())
        grads = torch.autograd.grad(cross_entropy(self.model, train), params)
        group = self.network_optimizer.param_groups[0]
        momentum, weight_decay = group["momentum"], group["weight_decay"]
        unrolled = copy.deepcopy(self.model)
        with torch.no_grad():
            for p, q, g in zip(params, unrolled.parameters(), grads, strict=True):
                d = g + weight_decay * p
                buf = self.network_optimizer.state.get(p, {}).get("momentum_buffer")
                if buf is not None:
                    d = d + momentum * buf
                q.copy_(p - eta * d)
        return unrolled

    def _hessian_vector_product(self, vector: list[Tensor], train: Batch) -> list[Tensor]:
        r = 0.01 / torch.cat([v.flatten() for v in vector]).norm()
        params = list(self.model.parameters())
        arch = self.model.arch_parameters()
        with torch.no_grad():
            for p, v in zip(params, vector, strict=True):
                p.add_(r * v)
        grads_p = torch.autograd.grad(cross_entropy(self.model, train), arch)
        with torch.no_grad():
            for p, v in zip(params, vector, strict=True):
                p.sub_(2 * r * v)
        grads_n = torch.autograd.grad(cross_entropy(self.model, train), arch)
        with torch.no_grad():
            for p, v in zip(params, vector, strict=True):
                p.add_(r * v)
        return [(gp - gn) / (2 * r) for gp, gn in zip(grads_p, grads_n, strict=True)]

    # -- one search step ---------------------------------------------------------------------

    def step(self, train: Batch, val: Batch, order: str) -> Tensor:
        # The published loop clears the weights' gradients only just before the weight
        # step; clearing them here as well keeps `deepcopy` from copying stale gradients
        # (the original builds its copy without them). It only lowers this model's memory.
        for p in self.model.parameters():
            p.grad = None
        self.arch_optimizer.zero_grad()
        if order == "first":
            self.first_order_grads(val)
        elif order == "second":
            self.second_order_grads(train, val)
        else:
            raise ValueError(f"order must be 'first' or 'second', got {order!r}")
        self.arch_optimizer.step()
        self.network_optimizer.zero_grad()
        loss = cross_entropy(self.model, train)
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.network_optimizer.step()
        return loss.detach()
