"""The report's sections: each module computes and draws what one section of the page shows."""
