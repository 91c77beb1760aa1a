"""Frame sources that need no camera: the synthetic drone scene (video files and folders to come)."""
