"""Item masks of real images from per-class colour statistics: centre against frame (not in the paper).

Where a class's items and backgrounds each have their own colours (the biased data a CGN learns from:
colour and texture tied to the class) and items are centred (the prior of the training's L_border), a
colour that is denser in the images' central half than on their frame belongs to the item. Per class
c and quantised colour v, with h_centre and h_frame the colour histograms of class c's centres and
frames, each normalised to sum 1:

    p(item | v, c) = h_centre[c, v] / (h_centre[c, v] + h_frame[c, v])

(0 for a colour seen in neither). An item's colour shows up more often in the centre than on the frame
and a background's the other way round, as long as each class's items cover more of the centre than of
the frame: the same test `CounterfactualGenerativeNetwork.orient_classes` puts to the CGN's own masks.
It gives the real images' masks in seconds, where a `CGNMaskEncoder` takes minutes to fit; it does not
apply to data whose item and background colours are not tied to the class (use a mask encoder or a
saliency model there).
"""

import torch

from .losses import frame_and_centre


def color_item_masks(
    pixel_values: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    bins: int = 16,
    border_width: int = 2,
) -> torch.Tensor:
    """Soft item masks (N, 1, H, W) in [0, 1] of images (N, C, H, W) in [-1, 1] with class `labels` (N,).

    Each channel is quantised to `bins` levels; the frame is `border_width` pixels wide and the centre
    the central half, rows and columns [H // 4, H - H // 4). Cut the result at 0.5 for a hard mask.
    """
    if pixel_values.ndim != 4:
        raise ValueError(f"pixel_values must be (N, C, H, W), got shape {tuple(pixel_values.shape)}.")
    n, channels, height, width = pixel_values.shape
    labels = torch.as_tensor(labels, device=pixel_values.device)
    if labels.shape != (n,):
        raise ValueError(
            f"need one label per image: got labels of shape {tuple(labels.shape)} for {n} images."
        )
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must be class ids in [0, {num_classes}), got {labels.unique().tolist()}.")
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}.")
    if not 0 < border_width <= min(height, width) // 4:
        raise ValueError(
            f"border_width must be in [1, {min(height, width) // 4}] for {height}x{width} images, "
            f"so the frame stays outside the centre; got {border_width}."
        )
    levels = ((pixel_values.float() + 1) / 2 * bins).long().clamp(0, bins - 1)
    weights = bins ** torch.arange(channels, device=levels.device)
    codes = (levels * weights[None, :, None, None]).sum(1)  # (N, H, W): one id per quantised colour
    frame, centre = frame_and_centre(height, width, border_width, codes.device)

    masks = torch.zeros(n, height, width, device=codes.device)
    for c in labels.unique().tolist():
        of_class = labels == c
        class_codes = codes[of_class]
        h_frame, h_centre = (
            torch.bincount(class_codes[:, region].flatten(), minlength=bins**channels).float()
            for region in (frame, centre)
        )
        h_frame, h_centre = h_frame / h_frame.sum(), h_centre / h_centre.sum()
        item = h_centre / (h_centre + h_frame).clamp(min=torch.finfo(h_frame.dtype).tiny)
        masks[of_class] = item[class_codes]
    return masks[:, None].to(pixel_values.dtype)
