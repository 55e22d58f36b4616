"""Parameters, multiply-adds and latency of a network, against hand counts (issue 17)."""
import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from dartsfast.evaluation import REFERENCE_GENOTYPES, count_multiply_adds, count_parameters, measure_latency
from dartsfast.evaluation.costs import latency_record, unfused_copy
from dartsfast.nn.blocks import FusedDepthwiseSE
from dartsfast.search.network import DiscreteNetwork


def test_one_convolution_by_hand():
    # 3 -> 8 channels, 3x3, stride 1, padding 1 on 5x5: 8*5*5 outputs, each 3*3*3 multiply-adds.
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert count_multiply_adds(conv, (1, 3, 5, 5)) == 8 * 5 * 5 * 3 * 3 * 3
    assert count_parameters(conv) == 8 * 3 * 3 * 3 + 8


def test_grouped_strided_conv_and_linear_by_hand():
    # Depthwise 4 channels, 3x3, stride 2, padding 1 on 6x6 -> 3x3: 4*3*3 outputs of 9 each;
    # then global pool and a linear 4 -> 10: 10 outputs of 4 each.
    net = nn.Sequential(nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=4, bias=False), nn.BatchNorm2d(4),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
    assert count_multiply_adds(net, (1, 4, 6, 6)) == 4 * 3 * 3 * 9 + 10 * 4
    assert count_parameters(net) == 4 * 9 + 2 * 4 + 4 * 10 + 10


@pytest.mark.parametrize("name", sorted(REFERENCE_GENOTYPES))
def test_a_network_count_matches_torch_flop_counter(name):
    # FlopCounterMode counts 2 FLOPs per multiply-add of convolutions and matmuls (no bias),
    # which is exactly the hooks' count; run on the plain form (the fused op is invisible to both).
    net = DiscreteNetwork(REFERENCE_GENOTYPES[name], channels=4, num_classes=10, layers=3, in_channels=1).eval()
    macs = count_multiply_adds(net, (1, 1, 8, 8))
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        unfused_copy(net)(torch.zeros(1, 1, 8, 8))
    assert macs > 0 and counter.get_total_flops() == 2 * macs


def test_the_fused_mbconv_middle_is_counted_and_the_model_left_alone():
    net = DiscreteNetwork(REFERENCE_GENOTYPES["all-mbconv"], channels=4, num_classes=10, layers=3, in_channels=1).eval()
    fused = [m for m in net.modules() if isinstance(m, FusedDepthwiseSE)]
    assert fused, "this test needs the fused MBConv middle"
    # On the network as it runs, hooks see the conv/linear modules called directly, and the
    # fused middles' outputs; each middle costs its depthwise conv (k*k per output element)
    # plus its SE's two 1x1 convs on the pooled vector (C*Cr each way).
    direct, middles = [0], [0]

    def conv_or_linear(m, _inputs, out):
        fan_in = m.in_features if isinstance(m, nn.Linear) else m.in_channels // m.groups * m.kernel_size[0] ** 2
        direct[0] += out.numel() * fan_in

    def middle(m, _inputs, out):
        c, cr = m.se.conv_reduce.in_channels, m.se.conv_reduce.out_channels
        middles[0] += out.numel() * m.conv_dw.kernel_size[0] ** 2 + 2 * c * cr

    state = {k: v.clone() for k, v in net.state_dict().items()}
    counted = count_multiply_adds(net, (1, 1, 8, 8))  # before the hooks below: its copy would carry them
    handles = [m.register_forward_hook(conv_or_linear) for m in net.modules() if type(m) in (nn.Conv2d, nn.Linear)]
    handles += [m.register_forward_hook(middle) for m in fused]
    with torch.inference_mode():
        net(torch.zeros(1, 1, 8, 8))
    for h in handles:
        h.remove()
    assert middles[0] > 0 and counted == direct[0] + middles[0]
    # The network itself keeps its fused middles and its BatchNorm statistics.
    assert [m for m in net.modules() if isinstance(m, FusedDepthwiseSE)] == fused
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())


def test_parameters_are_the_sum_of_numel():
    net = DiscreteNetwork(REFERENCE_GENOTYPES["seed-fmnist"], channels=6, num_classes=7, layers=4, in_channels=3)
    assert count_parameters(net) == sum(p.numel() for p in net.parameters())


def test_latency_is_measured_in_inference_mode():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten())
    stats = measure_latency(net, (2, 1, 6, 6), torch.device("cpu"), warmup=1, repeats=3, min_time_s=0.0)
    record = latency_record(stats, 2, torch.device("cpu"))
    assert stats.n == 3 and record["calls"] == 3 and record["batch"] == 2 and record["device"] == "cpu"
    assert 0 < record["q25_ms"] <= record["median_ms"] <= record["q75_ms"]
    assert latency_record(None, 1, torch.device("cpu")) is None


@pytest.mark.parametrize("shape", [(), (0, 1, 4, 4), (1, 1, 4.0, 4)])
def test_bad_input_shapes_name_the_problem(shape):
    with pytest.raises(ValueError, match="input_shape"):
        count_multiply_adds(nn.Conv2d(1, 1, 1), shape)


def test_not_a_module_is_a_type_error():
    with pytest.raises(TypeError, match="nn.Module"):
        count_parameters("net")
    with pytest.raises(TypeError, match="nn.Module"):
        count_multiply_adds(None, (1, 1, 4, 4))
