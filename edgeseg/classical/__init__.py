"""Classical (non-learned) segmentation tools: the k-means clustering baseline and
fully connected CRF refinement of any model's probabilities."""

from edgeseg.classical.crf import crf_refine_logits, dense_crf
from edgeseg.classical.kmeans import evaluate_kmeans, kmeans_segment, map_clusters_to_classes

__all__ = ["kmeans_segment", "map_clusters_to_classes", "evaluate_kmeans", "dense_crf", "crf_refine_logits"]
