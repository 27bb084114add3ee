"""Claim rules beyond start and end: windows, cities, audience ranges, money and channels."""
