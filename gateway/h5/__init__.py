"""The H5 claim page (H5领取页): the page and its claim client, the public campaign
endpoint the herd polls, and page set-up for partners (links and QR codes)."""
