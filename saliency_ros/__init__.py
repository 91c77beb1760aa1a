"""saliency_ros: visual saliency and salient-object masks for drones on ROS 2."""

__version__ = "0.1.0"
