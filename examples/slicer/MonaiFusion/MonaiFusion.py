"""MonaiFusion: multimodal image fusion (CT-MRI, MRI-PET, MRI-SPECT) in 3D Slicer with monai-fusion.

The module installs monai-fusion into Slicer's Python on first use (after asking), writes the two
selected volumes to temporary NRRD files, runs ``monai-fusion fuse`` in a separate process (so a
long registration never freezes Slicer and can be cancelled), streams its log into the module and
loads the fused volume and the second image resampled onto the MRI grid, shown in colour over the
MRI. Everything that does not need Slicer lives in ``MonaiFusionLib/runner.py`` and is tested
outside Slicer (``tests/test_slicer_module.py`` in the monai-fusion repository).
"""

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import ctk
import qt
import slicer
import vtk
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from MonaiFusionLib import runner

SETTINGS_PACKAGE_SPEC = "MonaiFusion/PackageSpec"
SETTINGS_CPU_TORCH = "MonaiFusion/CpuOnlyTorch"
POLL_INTERVAL_MS = 200


#
# MonaiFusion
#

class MonaiFusion(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "MONAI Fusion"
        self.parent.categories = ["Registration"]
        self.parent.dependencies = []
        self.parent.contributors = ["monai-fusion developers"]
        self.parent.helpText = """
Fuse an anatomical MRI with CT, PET or SPECT using <a href="https://pypi.org/project/monai-fusion/">monai-fusion</a>.
The second image is registered to the MRI (rigid, affine, deformable, or not at all), resampled onto the
MRI grid and fused with the chosen method. The results are loaded as new volumes: the fused volume and
the resampled image, shown in colour over the MRI.
On first use monai-fusion (with PyTorch and MONAI) is installed into Slicer's Python after confirmation.
See docs/slicer.md in the monai-fusion repository.
"""
        self.parent.acknowledgementText = """
Built on <a href="https://monai.io">MONAI</a>. The module layout follows the pattern of the
SlicerMONAIAuto3DSeg extension (scripted module, separate logic library, out-of-process inference).
"""


#
# MonaiFusionWidget
#

class MonaiFusionWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The user interface, built in code (no .ui file)."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._updatingGUI = False
        self._process = None
        self._request = None
        self._inputFolder = None
        self._mriNode = None
        self._results = {}
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self.onPollProcess)

    def onReload(self):
        import importlib

        self._stopProcess()
        importlib.reload(runner)
        ScriptedLoadableModuleWidget.onReload(self)

    # ---------------------------------------------------------------- building the panel

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        self.logic = MonaiFusionLogic()
        self.logic.logCallback = self.addLog

        inputs = ctk.ctkCollapsibleButton()
        inputs.text = "Inputs"
        self.layout.addWidget(inputs)
        form = qt.QFormLayout(inputs)

        self.taskComboBox = qt.QComboBox()
        for name, task in runner.TASKS.items():
            self.taskComboBox.addItem(task.title, name)
        self.taskComboBox.toolTip = "Which images are fused. The MRI is always the reference grid."
        form.addRow("Task:", self.taskComboBox)

        self.mriSelector = self._volumeSelector("Anatomical MRI: the reference grid the other image is resampled onto.")
        form.addRow("MRI volume:", self.mriSelector)
        self.movingSelector = self._volumeSelector("The CT, PET or SPECT volume, registered to the MRI.")
        self.movingLabel = qt.QLabel("PET volume:")
        form.addRow(self.movingLabel, self.movingSelector)

        options = ctk.ctkCollapsibleButton()
        options.text = "Fusion"
        self.layout.addWidget(options)
        form = qt.QFormLayout(options)

        self.methodComboBox = qt.QComboBox()
        self.methodComboBox.editable = True
        self.methodComboBox.addItems(list(runner.DEFAULT_METHODS))
        self.methodComboBox.toolTip = "Fusion rule or network (the list is refreshed from the installed monai-fusion)."
        form.addRow("Method:", self.methodComboBox)

        self.registrationComboBox = qt.QComboBox()
        self.registrationComboBox.addItems(list(runner.REGISTRATIONS))
        self.registrationComboBox.toolTip = ("Registration of the second image to the MRI. 'none': the images are "
                                             "already aligned in world coordinates (only resampled).")
        form.addRow("Registration:", self.registrationComboBox)

        self.outputFolderEdit = ctk.ctkPathLineEdit()
        self.outputFolderEdit.filters = ctk.ctkPathLineEdit.Dirs
        self.outputFolderEdit.settingKey = "MonaiFusion/OutputFolder"
        self.outputFolderEdit.toolTip = "Where monai-fusion writes its outputs; empty: a new temporary folder per run."
        form.addRow("Output folder:", self.outputFolderEdit)

        self.applyButton = qt.QPushButton("Apply")
        self.applyButton.toolTip = "Run monai-fusion fuse"
        self.layout.addWidget(self.applyButton)

        self.statusLabel = qt.QLabel("")
        self.statusLabel.wordWrap = True
        self.statusLabel.setTextInteractionFlags(qt.Qt.TextSelectableByMouse)
        self.layout.addWidget(self.statusLabel)

        self.logBox = qt.QPlainTextEdit()
        self.logBox.readOnly = True
        self.logBox.setMaximumBlockCount(5000)
        self.logBox.setMinimumHeight(120)
        self.layout.addWidget(self.logBox)

        display = ctk.ctkCollapsibleButton()
        display.text = "Display"
        self.layout.addWidget(display)
        form = qt.QFormLayout(display)
        buttons = qt.QHBoxLayout()
        self.showOverlayButton = qt.QPushButton("MRI + overlay")
        self.showOverlayButton.toolTip = "MRI in the background, the resampled image in colour in the foreground"
        self.showFusedButton = qt.QPushButton("Fused volume")
        self.showFusedButton.toolTip = "The fused grey volume alone (PET/SPECT: the fused luma)"
        self.showColourButton = qt.QPushButton("Colour fusion")
        self.showColourButton.toolTip = "PET/SPECT: the RGB colour fusion (fused luma with the colour map's chroma)"
        buttons.addWidget(self.showOverlayButton)
        buttons.addWidget(self.showFusedButton)
        buttons.addWidget(self.showColourButton)
        form.addRow("Show:", buttons)
        self.opacitySlider = ctk.ctkSliderWidget()
        self.opacitySlider.minimum = 0.0
        self.opacitySlider.maximum = 1.0
        self.opacitySlider.singleStep = 0.05
        self.opacitySlider.value = 0.4
        form.addRow("Overlay opacity:", self.opacitySlider)

        install = ctk.ctkCollapsibleButton()
        install.text = "Installation"
        install.collapsed = True
        self.layout.addWidget(install)
        form = qt.QFormLayout(install)
        self.packageSpecEdit = qt.QLineEdit()
        self.packageSpecEdit.text = qt.QSettings().value(SETTINGS_PACKAGE_SPEC, runner.DEFAULT_PACKAGE_SPEC)
        self.packageSpecEdit.toolTip = ("What pip installs: 'monai-fusion', 'monai-fusion==0.2.0', a wheel file, "
                                        "'-e /path/to/checkout'... (environment variable "
                                        f"{runner.PACKAGE_SPEC_ENV} overrides it)")
        form.addRow("Package:", self.packageSpecEdit)
        self.cpuTorchCheckBox = qt.QCheckBox("Install CPU-only PyTorch (smaller download, no GPU)")
        self.cpuTorchCheckBox.checked = str(qt.QSettings().value(SETTINGS_CPU_TORCH, "false")).lower() == "true"
        self.cpuTorchCheckBox.toolTip = f"Installs torch from {runner.TORCH_CPU_INDEX} before monai-fusion, if torch is missing."
        form.addRow(self.cpuTorchCheckBox)
        self.versionLabel = qt.QLabel("not checked yet")
        form.addRow("Installed:", self.versionLabel)
        row = qt.QHBoxLayout()
        self.checkButton = qt.QPushButton("Check")
        self.installButton = qt.QPushButton("Install / upgrade")
        row.addWidget(self.checkButton)
        row.addWidget(self.installButton)
        form.addRow(row)

        self.layout.addStretch(1)

        self.taskComboBox.connect("currentIndexChanged(int)", self.updateParameterNodeFromGUI)
        self.mriSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateParameterNodeFromGUI)
        self.movingSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateParameterNodeFromGUI)
        self.methodComboBox.connect("currentTextChanged(QString)", self.updateParameterNodeFromGUI)
        self.registrationComboBox.connect("currentIndexChanged(int)", self.updateParameterNodeFromGUI)
        self.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.showOverlayButton.connect("clicked(bool)", self.onShowOverlay)
        self.showFusedButton.connect("clicked(bool)", self.onShowFused)
        self.showColourButton.connect("clicked(bool)", self.onShowColour)
        self.opacitySlider.connect("valueChanged(double)", self.onOpacityChanged)
        self.checkButton.connect("clicked(bool)", self.onCheckInstallation)
        self.installButton.connect("clicked(bool)", self.onInstall)
        self.packageSpecEdit.connect("editingFinished()", self.onSettingsChanged)
        self.cpuTorchCheckBox.connect("toggled(bool)", self.onSettingsChanged)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()
        self._updateDisplayButtons()

    def _volumeSelector(self, toolTip):
        selector = slicer.qMRMLNodeComboBox()
        selector.nodeTypes = ["vtkMRMLScalarVolumeNode"]
        selector.showChildNodeTypes = False  # no label maps
        selector.addEnabled = False
        selector.removeEnabled = False
        selector.noneEnabled = True
        selector.showHidden = False
        selector.setMRMLScene(slicer.mrmlScene)
        selector.toolTip = toolTip
        return selector

    # ---------------------------------------------------------------- module life cycle

    def cleanup(self):
        self._stopProcess()
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        if self._parameterNode is not None:
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)

    def onSceneStartClose(self, caller, event):
        self._stopProcess()
        self._results = {}
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, parameterNode):
        if parameterNode is not None:
            self.logic.setDefaultParameters(parameterNode)
        if self._parameterNode is not None:
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        self._parameterNode = parameterNode
        if self._parameterNode is not None:
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        self.updateGUIFromParameterNode()

    # ---------------------------------------------------------------- GUI <-> parameter node

    def _currentTask(self):
        return self.taskComboBox.itemData(self.taskComboBox.currentIndex) or "mri-pet"

    def updateGUIFromParameterNode(self, caller=None, event=None):
        if self._parameterNode is None or self._updatingGUI:
            return
        self._updatingGUI = True
        try:
            node = self._parameterNode
            self.taskComboBox.setCurrentIndex(max(0, self.taskComboBox.findData(node.GetParameter("Task"))))
            self.mriSelector.setCurrentNode(node.GetNodeReference("MRI"))
            self.movingSelector.setCurrentNode(node.GetNodeReference("Moving"))
            method = node.GetParameter("Method")
            if method and self.methodComboBox.findText(method) < 0:
                self.methodComboBox.addItem(method)
            if method:
                self.methodComboBox.setCurrentIndex(self.methodComboBox.findText(method))
            self.registrationComboBox.setCurrentIndex(max(0, self.registrationComboBox.findText(node.GetParameter("Registration"))))
            task = runner.TASKS[self._currentTask()]
            self.movingLabel.text = f"{task.moving_label} volume:"
            self.opacitySlider.value = float(node.GetParameter("Opacity") or task.overlay_opacity)
            self._updateApplyButton()
        finally:
            self._updatingGUI = False

    def updateParameterNodeFromGUI(self, caller=None, event=None):
        if self._parameterNode is None or self._updatingGUI:
            return
        node = self._parameterNode
        wasModified = node.StartModify()
        try:
            task = self._currentTask()
            if node.GetParameter("Task") != task:
                node.SetParameter("Opacity", str(runner.TASKS[task].overlay_opacity))
            node.SetParameter("Task", task)
            node.SetNodeReferenceID("MRI", self.mriSelector.currentNodeID)
            node.SetNodeReferenceID("Moving", self.movingSelector.currentNodeID)
            node.SetParameter("Method", self.methodComboBox.currentText.strip())
            node.SetParameter("Registration", self.registrationComboBox.currentText)
        finally:
            node.EndModify(wasModified)

    def _inputProblem(self):
        """One line saying why Apply cannot run yet, or None."""
        task = runner.TASKS[self._currentTask()]
        mri, moving = self.mriSelector.currentNode(), self.movingSelector.currentNode()
        if mri is None:
            return "Select the MRI volume."
        if moving is None:
            return f"Select the {task.moving_label} volume."
        if mri == moving:
            return f"The MRI and the {task.moving_label} volume must be different volumes."
        for label, volume in (("MRI", mri), (task.moving_label, moving)):
            if volume.GetImageData() is None:
                return f"The {label} volume has no image data."
        if not self.methodComboBox.currentText.strip():
            return "Choose a fusion method."
        return None

    def _updateApplyButton(self):
        if self._process is not None:
            self.applyButton.text = "Cancel"
            self.applyButton.toolTip = "Stop monai-fusion"
            self.applyButton.enabled = True
            return
        problem = self._inputProblem()
        self.applyButton.text = "Apply"
        self.applyButton.toolTip = problem or "Run monai-fusion fuse"
        self.applyButton.enabled = problem is None

    # ---------------------------------------------------------------- messages

    def addLog(self, text):
        self.logBox.appendPlainText(text)
        self.logBox.ensureCursorVisible()

    def showStatus(self, message, error=False):
        self.statusLabel.text = message
        self.statusLabel.setStyleSheet("color: #c62828" if error else "")
        if message:
            self.addLog(message)

    # ---------------------------------------------------------------- installation

    def onSettingsChanged(self, *args):
        qt.QSettings().setValue(SETTINGS_PACKAGE_SPEC, self.packageSpecEdit.text.strip() or runner.DEFAULT_PACKAGE_SPEC)
        qt.QSettings().setValue(SETTINGS_CPU_TORCH, "true" if self.cpuTorchCheckBox.checked else "false")

    def _showInstallation(self, installation):
        problem = installation.problem()
        if installation.installed:
            self.versionLabel.text = f"monai-fusion {installation.version}" + (f" ({problem})" if problem else "")
        else:
            self.versionLabel.text = problem or "not installed"
        current = self.methodComboBox.currentText
        self._updatingGUI = True
        try:
            self.methodComboBox.clear()
            self.methodComboBox.addItems(installation.methods())
            index = self.methodComboBox.findText(current)
            if index >= 0:
                self.methodComboBox.setCurrentIndex(index)
            elif current:
                self.methodComboBox.setEditText(current)  # a name typed by the user; checked on Apply
        finally:
            self._updatingGUI = False
        self.updateParameterNodeFromGUI()

    def onCheckInstallation(self):
        try:
            with slicer.util.WaitCursor():
                installation = self.logic.installation(refresh=True)
        except runner.RunnerError as error:
            self.showStatus(str(error), error=True)
            return
        self._showInstallation(installation)
        self.showStatus(installation.problem() or f"monai-fusion {installation.version} is ready.", error=bool(installation.problem()))

    def onInstall(self):
        self.onSettingsChanged()
        try:
            installation = self.logic.install(self.packageSpecEdit.text, cpuOnlyTorch=self.cpuTorchCheckBox.checked,
                                              upgrade=True, askConfirmation=True)
        except runner.RunnerError as error:
            self.showStatus(str(error), error=True)
            return
        self._showInstallation(installation)
        self.showStatus(f"monai-fusion {installation.version} is installed.")

    # ---------------------------------------------------------------- running

    def onApplyButton(self):
        if self._process is not None:
            self.showStatus("Cancelling...")
            self._process.cancel()
            return
        problem = self._inputProblem()
        if problem:
            self.showStatus(problem, error=True)
            return
        self.logBox.clear()
        self.showStatus("Checking monai-fusion in Slicer's Python...")
        try:
            installation = self.logic.ensureInstalled(self.packageSpecEdit.text, cpuOnlyTorch=self.cpuTorchCheckBox.checked)
            self._showInstallation(installation)
            self._mriNode = self.mriSelector.currentNode()
            with slicer.util.WaitCursor():
                self._request, self._inputFolder = self.logic.prepareRequest(
                    self._mriNode, self.movingSelector.currentNode(), self._currentTask(),
                    self.methodComboBox.currentText.strip(), self.registrationComboBox.currentText,
                    self.outputFolderEdit.currentPath, installation)
            self._process = self.logic.start(self._request)
        except runner.RunnerError as error:
            self._removeInputs()
            self.showStatus(str(error), error=True)
            return
        self.outputFolderEdit.addCurrentPathToHistory()
        self.showStatus(f"Running monai-fusion fuse ({self._request.task}, {self._request.method}, "
                        f"{self._request.registration} registration)...")
        self._updateApplyButton()
        self._timer.start()

    def onPollProcess(self):
        process = self._process
        if process is None:
            self._timer.stop()
            return
        for line in process.new_log_lines():
            self.addLog(line)
        if process.poll() is None:
            if process.progress and process.progress != self.statusLabel.text:
                self.statusLabel.text = process.progress  # a progress bar's latest state, not logged
            return
        self._timer.stop()
        for line in process.new_log_lines():
            self.addLog(line)
        outcome = runner.finish(process, self._request)
        self._process = None
        self._removeInputs()
        self._updateApplyButton()
        if not outcome.ok:
            self.showStatus(outcome.message, error=not outcome.cancelled)
            return
        try:
            with slicer.util.WaitCursor():
                self._results = self.logic.loadResults(outcome.items, self._mriNode, self.opacitySlider.value)
        except Exception as error:  # a file Slicer cannot read: one line, details in the Python console
            logging.exception("MonaiFusion: loading the results failed")
            self.showStatus(f"Loading the results failed: {error}", error=True)
            return
        self._updateDisplayButtons()
        self.showStatus(f"{outcome.message}; results in {self._request.out_dir}")

    def _removeInputs(self):
        if self._inputFolder:
            shutil.rmtree(self._inputFolder, ignore_errors=True)
        self._inputFolder = None

    def _stopProcess(self):
        self._timer.stop()
        if self._process is not None:
            self._process.cancel()
            self._process = None
        self._removeInputs()

    # ---------------------------------------------------------------- display

    def _updateDisplayButtons(self):
        self.showOverlayButton.enabled = "overlay" in self._results
        self.showFusedButton.enabled = "fused" in self._results
        self.showColourButton.enabled = "colour" in self._results

    def onShowOverlay(self):
        if "overlay" in self._results:
            self.logic.showOverlay(self._mriNode, self._results["overlay"], self.opacitySlider.value)

    def onShowFused(self):
        if "fused" in self._results:
            slicer.util.setSliceViewerLayers(background=self._results["fused"], foreground=None, fit=True)

    def onShowColour(self):
        if "colour" in self._results:
            slicer.util.setSliceViewerLayers(background=self._results["colour"], foreground=None, fit=True)

    def onOpacityChanged(self, value):
        if self._parameterNode is not None and not self._updatingGUI:
            self._parameterNode.SetParameter("Opacity", str(value))
        if "overlay" in self._results:
            slicer.util.setSliceViewerLayers(foregroundOpacity=value)


#
# MonaiFusionLogic
#

class MonaiFusionLogic(ScriptedLoadableModuleLogic):
    """Installation, export, the out-of-process run and loading the results; usable without the GUI.

    Batch use from Slicer's Python console::

        logic = slicer.util.getModuleLogic("MonaiFusion")  # or MonaiFusionLogic()
        request, inputs = logic.prepareRequest(mriNode, petNode, "mri-pet", "laplacian_pyramid", "rigid", "")
        outcome = runner.run_fuse(request, logic.launcher(), env=logic.environment())
        logic.loadResults(outcome.items, mriNode)
    """

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self.logCallback = None
        self._installation = None

    def log(self, text):
        logging.info(text)
        if self.logCallback:
            self.logCallback(text)

    def setDefaultParameters(self, parameterNode):
        defaults = {"Task": "mri-pet", "Method": runner.DEFAULT_METHODS[0], "Registration": "rigid"}
        for name, value in defaults.items():
            if not parameterNode.GetParameter(name):
                parameterNode.SetParameter(name, value)

    # ---------------------------------------------------------------- Slicer's Python

    @staticmethod
    def pythonExecutable():
        """``PythonSlicer`` (next to the Slicer executable), which sets up Slicer's Python environment."""
        candidates = [os.path.join(os.path.dirname(sys.executable), "PythonSlicer"),
                      os.path.join(slicer.app.slicerHome, "bin", "PythonSlicer")]
        for candidate in candidates:
            for name in (candidate, candidate + ".exe"):
                if os.path.isfile(name):
                    return name
        return runner.find_python_slicer(fallback=sys.executable)

    def launcher(self):
        return runner.module_launcher(self.pythonExecutable())

    @staticmethod
    def environment():
        """The environment Slicer was started with (PythonSlicer adds Slicer's own paths), UTF-8 output."""
        startup = slicer.util.startupEnvironment() if hasattr(slicer.util, "startupEnvironment") else None
        return runner.child_environment(startup)

    def installation(self, refresh=False):
        """What is installed in Slicer's Python (probed out of process, cached)."""
        if self._installation is None or refresh:
            self._installation = runner.probe_installation(self.pythonExecutable(), env=self.environment())
        return self._installation

    def install(self, spec, cpuOnlyTorch=False, upgrade=False, askConfirmation=True):
        """pip-install ``spec`` (default monai-fusion) into Slicer's Python; CPU-only torch first if asked."""
        spec = runner.package_spec(spec)
        args = runner.pip_install_args(spec, upgrade=upgrade)
        installation = self.installation(refresh=True)
        if installation.python and tuple(installation.python[:2]) < runner.MINIMUM_PYTHON:
            raise runner.RunnerError(installation.problem())
        torchArgs = runner.torch_cpu_install_args() if cpuOnlyTorch and not installation.torch else None
        if askConfirmation:
            what = f"'{spec}'" + (" and CPU-only PyTorch" if torchArgs else "")
            question = (f"MONAI Fusion needs the monai-fusion Python package ({installation.problem() or 'upgrade'}).\n\n"
                        f"Install {what} into Slicer's Python now? This downloads PyTorch, MONAI and ITK if they are "
                        "missing (up to a few GB) and can take several minutes.")
            if not slicer.util.confirmOkCancelDisplay(question, windowTitle="Install monai-fusion"):
                raise runner.RunnerError("monai-fusion is not installed; install it from the Installation section to run the fusion")
        try:
            with slicer.util.WaitCursor():
                if torchArgs:
                    self.log("Installing CPU-only PyTorch (pip)...")
                    slicer.util.pip_install(torchArgs)
                self.log(f"Installing {spec} (pip)...")
                slicer.util.pip_install(args)
        except Exception as error:  # pip's own output is in the Python console
            raise runner.RunnerError(f"pip could not install {spec} ({type(error).__name__}); "
                                     "see the Python console for pip's output") from None
        installation = self.installation(refresh=True)
        problem = installation.problem()
        if problem:
            raise runner.RunnerError(f"after installing {spec}: {problem}")
        return installation

    def ensureInstalled(self, spec=None, cpuOnlyTorch=False, askConfirmation=True):
        installation = self.installation()
        if installation.problem() is None:
            return installation
        installation = self.installation(refresh=True)  # maybe installed from outside since the last check
        if installation.problem() is None:
            return installation
        return self.install(spec, cpuOnlyTorch=cpuOnlyTorch, upgrade=installation.installed, askConfirmation=askConfirmation)

    # ---------------------------------------------------------------- running

    @staticmethod
    def exportVolume(volumeNode, path):
        """Write a volume as LPS NRRD without changing its storage node (transforms hardened)."""
        try:
            if hasattr(slicer.util, "exportNode"):
                slicer.util.exportNode(volumeNode, path, world=True)
            else:  # older Slicer: saveNode (points the node's storage at the temporary file)
                slicer.util.saveNode(volumeNode, path)
        except Exception as error:
            raise runner.RunnerError(f"the volume could not be written to a temporary NRRD file: {error}") from None
        if not os.path.isfile(path):
            raise runner.RunnerError("the volume could not be written to a temporary NRRD file")
        return path

    def prepareRequest(self, mriNode, movingNode, task, method, registration, outputFolder="", installation=None):
        """Export both volumes to a new temporary folder; returns the request and that folder.

        The temporary files are named by role (never by node name, which may hold patient data).
        """
        if task not in runner.TASKS:
            raise runner.RunnerError(f"unknown task {task!r}")
        folder = slicer.util.tempDirectory("MonaiFusion")
        inputs = os.path.join(folder, "inputs")
        os.makedirs(inputs, exist_ok=True)
        moving = runner.TASKS[task].moving_label.lower()
        try:
            mriPath = self.exportVolume(mriNode, os.path.join(inputs, "mri.nrrd"))
            movingPath = self.exportVolume(movingNode, os.path.join(inputs, f"{moving}.nrrd"))
        except runner.RunnerError:
            shutil.rmtree(inputs, ignore_errors=True)
            raise
        request = runner.FuseRequest(mri=Path(mriPath), moving=Path(movingPath), task=task, method=method,
                                     registration=registration,
                                     out_dir=runner.new_run_folder(outputFolder) if outputFolder else Path(folder) / "output")
        try:
            request.validate(installation)
        except runner.RunnerError:
            shutil.rmtree(inputs, ignore_errors=True)
            raise
        return request, inputs

    def start(self, request):
        command = runner.fuse_command(request, self.launcher())
        self.log("Command: " + subprocess.list2cmdline(command))
        return runner.FuseProcess(command, env=self.environment())

    # ---------------------------------------------------------------- results

    def loadResults(self, items, mriNode, opacity=None):
        """Load the reported files; the overlay goes over the MRI in colour. Returns {role: node}."""
        nodes = {}
        for item in items:
            if item.role == "transform":
                nodes["transform"] = slicer.util.loadTransform(str(item.path))
                nodes["transform"].SetName(item.name)
                continue
            node = slicer.util.loadVolume(str(item.path), {"name": item.name, "show": False})
            node.CreateDefaultDisplayNodes()
            if item.color_node_id and not item.colour:
                self._colourDisplay(node, item.color_node_id, threshold=item.color_node_id == runner.PET_COLOR_NODE_ID)
            nodes[item.role] = node
        if "overlay" in nodes:
            overlayOpacity = opacity if opacity is not None else next(i.opacity for i in items if i.role == "overlay")
            self.showOverlay(mriNode, nodes["overlay"], overlayOpacity)
        elif "fused" in nodes:
            slicer.util.setSliceViewerLayers(background=nodes["fused"], foreground=None, fit=True)
        return nodes

    @staticmethod
    def _colourDisplay(volumeNode, colorNodeId, threshold):
        display = volumeNode.GetDisplayNode()
        display.SetAndObserveColorNodeID(colorNodeId)
        display.SetAutoWindowLevel(True)
        if threshold:
            # make the near-zero background transparent so the MRI shows through outside the uptake
            low, high = volumeNode.GetImageData().GetScalarRange()
            display.SetAutoThreshold(False)
            display.SetThreshold(low + 0.05 * (high - low), high)
            display.SetApplyThreshold(True)

    @staticmethod
    def showOverlay(mriNode, overlayNode, opacity):
        slicer.util.setSliceViewerLayers(background=mriNode, foreground=overlayNode, foregroundOpacity=opacity, fit=True)


#
# MonaiFusionTest
#

class MonaiFusionTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (Reload and Test): the parts that need no monai-fusion installation."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_export_and_command()

    def test_export_and_command(self):
        import numpy as np

        self.delayDisplay("Export two volumes and build the fuse command")
        mri = slicer.util.addVolumeFromArray(np.random.rand(8, 9, 10).astype("float32"), name="mri")
        pet = slicer.util.addVolumeFromArray(np.random.rand(6, 7, 8).astype("float32"), name="pet")
        logic = MonaiFusionLogic()
        request, inputs = logic.prepareRequest(mri, pet, "mri-pet", "average", "none")
        try:
            command = runner.fuse_command(request, logic.launcher())
            self.assertIn("--pet", command)
            self.assertEqual(runner.read_nrrd_header(request.mri)["space"], "left-posterior-superior")
        finally:
            shutil.rmtree(inputs, ignore_errors=True)
        self.delayDisplay("Test passed")
