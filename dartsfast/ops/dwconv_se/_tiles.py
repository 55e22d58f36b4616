"""``@triton.jit`` helpers shared by dwconv_se's forward and backward kernels: where a
program sits in the grid, which pixels a tile holds, NHWC addressing, the depthwise conv
of one tile, and the sigmoid. Triton inlines them, so the kernels compile as if written
out in place.

Every kernel's grid is (N·CHUNKS, ⌈C/BLOCK_C⌉): axis 0 is image n and its pixel chunk
(TILES tiles of BLOCK_P pixels), axis 1 a block of BLOCK_C contiguous channels.
"""
import triton
import triton.language as tl

# Shape integers that vary from layer to layer are not specialised on (divisibility by 16,
# == 1): each new pattern would be another compile (~1 s) per kernel. C and the strides
# still are — their divisibility is what lets a thread load 8 channels as one vector.
VARYING = ["H", "W", "Wo", "HWo", "CHUNKS", "TILES"]


@triton.jit
def program_tile(CHUNKS, C, BLOCK_C: tl.constexpr):
    """(pid, image n, pixel chunk, channels c [BLOCK_C], channel mask) of this program."""
    pid = tl.program_id(0)
    n = pid // CHUNKS
    chunk = pid % CHUNKS
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    return pid, n, chunk, c, c < C


@triton.jit
def pixel_tile(chunk, t, TILES, num_pixels, width, BLOCK_P: tl.constexpr):
    """Tile t of the chunk: flat pixel indices p [BLOCK_P], their mask, row and column."""
    p = (chunk * TILES + t) * BLOCK_P + tl.arange(0, BLOCK_P)
    p_mask = p < num_pixels
    row = p // width
    return p, p_mask, row, p - row * width


@triton.jit
def tile_ptrs(img, row, col, c, s_row, s_col, s_c):
    """[BLOCK_P, BLOCK_C] pointers to pixels (row, col) × channels c of one image."""
    return img + (row * s_row + col * s_col)[:, None] + (c * s_c)[None, :]


@triton.jit
def bn_params(mean_ptr, scale_ptr, beta_ptr, c, c_mask):
    """The per-channel BatchNorm mean, γ·inv_std and β of channels c."""
    mean = tl.load(mean_ptr + c, mask=c_mask, other=0.0)
    scale = tl.load(scale_ptr + c, mask=c_mask, other=0.0)
    beta = tl.load(beta_ptr + c, mask=c_mask, other=0.0)
    return mean, scale, beta


@triton.jit
def conv_window(x_img, ho, wo, c, sxh, sxw, sxc, STRIDE: tl.constexpr, K: tl.constexpr):
    """(top row, left column, pointer tile) of each output pixel's k×k input window."""
    PAD: tl.constexpr = K // 2
    h0 = ho * STRIDE - PAD
    w0 = wo * STRIDE - PAD
    return h0, w0, tile_ptrs(x_img, h0, w0, c, sxh, sxw, sxc)


@triton.jit
def load_tap(base, kh, kw, row_ok, w0, W, c_mask, sxh, sxw):
    """Input tap (kh, kw) of the window tile; padding and masked pixels read 0."""
    ok = row_ok & (w0 + kw >= 0) & (w0 + kw < W)
    return tl.load(base + (kh * sxh + kw * sxw), mask=ok[:, None] & c_mask[None, :], other=0.0)


@triton.jit
def dwconv_tile(x_img, w_ptr, ho, wo, p_mask, c, c_mask, C, H, W, sxh, sxw, sxc,
                STRIDE: tl.constexpr, K: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    """z[p, c] of one tile in fp32; padded taps and masked pixels contribute 0."""
    # One pointer tile at the window's corner; each tap adds a scalar offset, and the row
    # mask is built once per kernel row: ~12 instead of ~25 integer ops per tap. The kernel
    # rows are a real loop: fully unrolled, ptxas hoists all k² tile loads and spills.
    h0, w0, base = conv_window(x_img, ho, wo, c, sxh, sxw, sxc, STRIDE, K)
    acc = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
    for kh in range(K):
        row_ok = p_mask & (h0 + kh >= 0) & (h0 + kh < H)
        for kw in tl.static_range(K):
            xv = load_tap(base, kh, kw, row_ok, w0, W, c_mask, sxh, sxw)
            # Filter stored [K*K, C] fp32: one contiguous BLOCK_C vector per tap (L1-resident).
            wv = tl.load(w_ptr + (kh * K + kw) * C + c, mask=c_mask, other=0.0)
            acc += xv.to(tl.float32) * wv[None, :]
    return acc


@triton.jit
def sigmoid(a):
    # exp-based (no libdevice: the interpreter has none); a → -inf gives 1/inf = 0.
    return 1.0 / (1.0 + tl.exp(-a))
