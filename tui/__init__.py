"""The Textual app of `localai chat`: screens in `screens/`, widgets in `widgets/`, styles in app.tcss."""
