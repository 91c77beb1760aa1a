"""Scoring of saliency maps and object masks (numpy only; shared by training and evaluation)."""
