"""Frame sources that need no camera: video files, image folders, dataset layouts and the synthetic drone scene."""
